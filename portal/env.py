"""Reading settings from the environment: each helper names the variable when its value is refused, so a bad
one stops the start with ImproperlyConfigured instead of a confusing error later. Used by portal/settings.py
(after it has read `.env`) and portal/serve.py.

Kept by hand rather than taken from django-environ, whose `Env.bool` reads any unknown word as False: here
`DJANGO_DEBUG=maybe` is refused.
"""

import os
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

Number = TypeVar("Number", int, float)


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def envbool(name: str, default: bool) -> bool:
    value = env(name).lower()
    if value == "":
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0, true/false, yes/no or on/off, not {value!r}")


def envint(name: str, default: int) -> int:
    return _envnumber(name, default, int, "a whole number")


def envfloat(name: str, default: float) -> float:
    return _envnumber(name, default, float, "a number")


def _envnumber(name: str, default: Number, kind: type[Number], what: str) -> Number:
    value = env(name)
    if value == "":
        return default
    try:
        return kind(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {what}, not {value!r}") from None


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env(name, default) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value
