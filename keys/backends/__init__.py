"""The two places keys can live. Both answer the same small interface; settings pick one."""

from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import NamedTuple, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from keys.models import ApiKey, Plan


@dataclass(frozen=True)
class IssuedSecret:
    value: str  # shown to the user once, never stored
    prefix: str
    digest: str | None = None  # local backend: SHA-256 of the value
    backend_key_id: str = ""  # aws backend: API Gateway's key id


class Counted(NamedTuple):
    """What a key used in a day or a window: requests, and tokens and money (pico-units, keys/money.py)
    where the backend counts them."""

    requests: int = 0
    tokens: int = 0
    spent: int = 0


class KeyBackend(Protocol):
    """What callers need from a backend. Each answers for itself, so callers never ask which one is active
    (as `django.contrib.auth.authenticate()` asks its backends, never their names)."""

    name: str
    # Tollgate's own model API (/query, /v1) admits this backend's keys; False where a gateway does.
    serves_model_api: bool

    def sync_plans(self) -> None:
        """Bring the Plan rows in line with where the backend keeps its plans; raise BackendUnavailable."""

    def list_plans(self) -> list[Plan]:
        """The plans offered for new keys, read from the database only: no writes, no remote calls."""

    def issue(self, *, user: AbstractBaseUser, plan: Plan) -> IssuedSecret:
        """Make a new secret on `plan`; raise KeyAlreadyExists or KeyCreateFailed."""

    def reissue(self, *, key: ApiKey) -> IssuedSecret:
        """A new secret for `key` on its plan, the old one refused from then on (at once, or once the row
        holds the new secret). Raise KeyCreateFailed or BackendUnavailable with the old one still working."""

    def withdraw(self, issued: IssuedSecret) -> None:
        """Undo `issue` when the portal could not record the key."""

    def revoke(self, *, key: ApiKey) -> None: ...

    def daily_usage(self, *, key: ApiKey, start: date, end: date) -> dict[date, Counted]:
        """Use per day from `start` to `end` inclusive (missing days used nothing)."""

    def window_usage(self, *, key: ApiKey, start: date, today: date) -> Counted:
        """Use in the key's quota window that began on `start`, up to `today`."""

    def gateway_key(self, *, key: ApiKey) -> str | None:
        """The value the chat page sends to the gateway that meters `key`, fetched when needed and never
        stored; None when Tollgate meters the key itself. Raise BackendUnavailable."""


# The short names KEYS_BACKEND accepts; anything else is a dotted path to a KeyBackend class.
BACKENDS = {"local": "keys.backends.local.LocalBackend", "aws": "keys.backends.aws.AwsBackend"}


def get_backend(name: str | None = None) -> KeyBackend:
    """The backend that KEYS_BACKEND (or `name`) names: one instance per process, so the aws backend
    holds one API Gateway client however many keys a page shows."""
    return _backend(name or settings.KEYS_BACKEND)


@cache
def _backend(name: str) -> KeyBackend:
    try:
        backend_class = import_string(BACKENDS.get(name, name))
    except ImportError as exc:
        raise ImproperlyConfigured(f"KEYS_BACKEND {name!r} cannot be imported: {exc}") from exc
    return backend_class()


def backend_forget(**kwargs) -> None:
    """On `setting_changed` (KeysConfig.ready), whatever the setting: a backend reads its own
    (AWS_DEFAULT_REGION, a dotted-path backend's), and settings change only in tests."""
    _backend.cache_clear()


def backend_check(**kwargs) -> list[checks.CheckMessage]:
    """`manage.py check` (and `make run`) refuse a KEYS_BACKEND that names no importable class."""
    try:
        get_backend()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="keys.E001")]
    return []
