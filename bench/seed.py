"""Benchmark data, made through the app's own services. Run with the bench's environment:

    python bench/seed.py keys QUOTA       -> prints {"unlimited": "<secret>", "exact": "<secret>"}
    python bench/seed.py usage            -> prints {"unlimited": N, "exact": N} (today's window)
    python bench/seed.py failures         -> prints {"rows": N, "failures": N}: the failed-authentication audit
    python bench/seed.py bad-keys N PATH  -> writes N different bad keys to PATH, as a flood would send them:
                                             well-formed but unknown, wrong checksum, malformed, in turn

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
from django.db.models import Count, Sum  # noqa: E402
from django.utils import timezone  # noqa: E402

from keys import tokens  # noqa: E402
from keys.models import ApiKey, AuthFailure, Plan  # noqa: E402
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


def failures() -> dict[str, int]:
    totals = AuthFailure.objects.aggregate(rows=Count("id"), failures=Sum("failures"))
    return {"rows": totals["rows"], "failures": totals["failures"] or 0}


def bad_keys(count: int, path: str) -> None:
    def bad(i: int) -> str:
        secret = tokens.generate_secret()  # unknown: nobody holds it
        if i % 3 == 1:
            return secret[:-1] + ("0" if secret[-1] != "0" else "1")  # its checksum broken
        if i % 3 == 2:
            return f"tg_{i:040d}!"  # not a key's shape at all
        return secret

    Path(path).write_text("".join(bad(i) + "\n" for i in range(count)))


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "keys":
        print(json.dumps(make_keys(int(sys.argv[2]))))
    elif command == "usage":
        print(json.dumps(usage()))
    elif command == "failures":
        print(json.dumps(failures()))
    elif command == "bad-keys":
        bad_keys(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)
