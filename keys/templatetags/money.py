"""`{{ units|money }}`: pico-units (keys/money.py) for people, with the currency's symbol ("$0.0042")."""

from django import template

from keys import money

register = template.Library()


@register.filter(name="money")
def shown(units: int | None) -> str:
    return "" if units is None else money.shown(units)
