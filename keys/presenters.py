"""Keys with their usage, shaped for the dashboard, the keys page and the chat page."""

import logging
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from keys import services
from keys.errors import BackendUnavailable
from keys.models import ApiKey

log = logging.getLogger("tollgate.keys")


@dataclass
class KeyRow:
    key: ApiKey
    window: services.WindowUsage | None
    days: list[services.DayUsage] | None = None


def keys_with_usage(user: AbstractBaseUser, *, days: int = 0, active_only: bool = False) -> list[KeyRow]:
    keys = ApiKey.objects.filter(owner=user).select_related("plan")
    if active_only:
        keys = keys.active()
    rows = []
    for key in keys:
        try:
            window = services.api_key_window_usage(key=key)
            history = services.api_key_usage(key=key, days=days) if days else None
        except BackendUnavailable:
            log.warning("usage unavailable for key %s", key.pk)
            window, history = None, None
        rows.append(KeyRow(key=key, window=window, days=history))
    return rows
