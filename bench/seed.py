"""Benchmark data, made through the app's own services. Run with the bench's environment:

    python bench/seed.py keys QUOTA       -> prints {"unlimited": "<secret>", "exact": "<secret>"}
    python bench/seed.py usage            -> prints {"unlimited": N, "exact": N} (today's window)

`unlimited` is on a plan that never runs out during a run; `exact` is on a plan of QUOTA requests
per day, for the exactness test. Keys are made with keys.services.api_key_create, as a user would.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.utils import timezone  # noqa: E402

from keys.models import ApiKey, Plan  # noqa: E402
from keys.services import api_key_create, used_in_window  # noqa: E402

UNLIMITED_QUOTA = 2_000_000_000  # PositiveIntegerField's range; no run gets near it
PLANS = {"unlimited": "BenchUnlimited", "exact": "BenchExact"}


def make_keys(exact_quota: int) -> dict[str, str]:
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"email": "bench@example.com"})
    quotas = {"unlimited": UNLIMITED_QUOTA, "exact": exact_quota}
    secrets = {}
    for role, name in PLANS.items():
        plan, _ = Plan.objects.update_or_create(name=name, defaults={"quota": quotas[role], "period": "DAY"})
        _key, secrets[role] = api_key_create(user=user, plan=plan)
    return secrets


def usage() -> dict[str, int]:
    now = timezone.now()
    counts = {}
    for role, name in PLANS.items():
        key = ApiKey.objects.active().select_related("plan").get(plan__name=name, owner__username="bench")
        counts[role] = used_in_window(key, now)
    return counts


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "keys":
        print(json.dumps(make_keys(int(sys.argv[2]))))
    elif command == "usage":
        print(json.dumps(usage()))
    else:
        sys.exit(__doc__)
