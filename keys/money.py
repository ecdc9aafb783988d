"""Money, exact: prices and budgets are decimals of the currency `CURRENCY` names; what Tollgate
counts is whole units of one millionth of a millionth of it (10^-12: a "pico-unit").

A price is per million tokens with at most 6 decimals, so one token costs price x 10^-6 of the
currency: price x 10^6 pico-units, a whole number. Every charge is tokens times that, so it is
whole too: no floats, no rounding, anywhere between a price and a charge.
"""

from decimal import Decimal

from babel.numbers import format_currency, get_currency_symbol
from django.conf import settings

DECIMALS = 6  # of a price or a budget
UNITS_PER_CURRENCY = 10**12
MAX_PRICE = Decimal(1000)  # per million tokens
MAX_BUDGET = Decimal(1_000_000)  # per period: 10^18 units, within a 64-bit counter
MAX_UNITS = 10**18  # the most one request is charged or reserved, and the most a counter holds


def units(amount: Decimal | float | int) -> int:
    """A budget in pico-units. A float is read by its shortest repr: SQLite hands back a decimal
    column of at most 13 digits as one, and its repr is those digits exactly."""
    return int(Decimal(str(amount)) * UNITS_PER_CURRENCY)


def per_token(price: Decimal | None) -> int:
    """What one token costs at `price` (per million tokens), in pico-units; an unpriced model is free."""
    return 0 if price is None else int(price * UNITS_PER_CURRENCY / 10**6)


def amount(counted: int) -> Decimal:
    """Pico-units as the decimal amount of the currency, exactly (for the JSON API)."""
    return (Decimal(counted) / UNITS_PER_CURRENCY).normalize() if counted else Decimal(0)


def decimal_string(counted: int | None) -> str | None:
    """The JSON API's form: an exact decimal string, at least two decimals ("0.0042", "5.00")."""
    if counted is None:
        return None
    value = amount(counted)
    return f"{value:.2f}" if value == value.quantize(Decimal("0.01")) else f"{value:f}"


def shown(counted: int, currency: str | None = None) -> str:
    """For people: the currency's symbol where the locale data has one ("$0.0042", "€5.00"), with the
    decimals the amount needs (two at least, twelve at most)."""
    currency = currency or settings.CURRENCY
    text = decimal_string(counted)
    decimals = len(text.partition(".")[2])
    pattern = "¤#,##0." + "0" * decimals
    return format_currency(amount(counted), currency, format=pattern, locale="en_US", currency_digits=False)


def symbol(currency: str | None = None) -> str:
    return get_currency_symbol(currency or settings.CURRENCY, locale="en_US")
