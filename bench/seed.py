"""The bench's keys, made as a user makes them, and what they used. Run in the environment of the
Tollgate being measured (bench/run.py does):

    python bench/seed.py keys QUOTA URL   prints {"unlimited": SECRET, "exact": SECRET, "budgeted": SECRET}
    python bench/seed.py usage            prints the exact key's count in today's window
    python bench/seed.py bad-keys N PATH  writes N different bad keys to PATH, a line each, as a flood
                                          would send them: unknown, wrong checksum, malformed, in turn

`unlimited` never runs out during a run, but has a token budget (of 10^12 a day), so that every
request is bounded and its tokens reserved and settled, as on a plan that meters tokens; `exact` has
QUOTA requests a day, for the exactness test; `budgeted` has a money budget (that never runs out
either) and reaches the priced model `bench-priced` at the stand-in's URL, for what a money budget
costs.
"""

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.utils import timezone  # noqa: E402

from keys import tokens  # noqa: E402
from keys.models import ApiKey, Plan  # noqa: E402
from keys.services import api_key_create, used_in_window  # noqa: E402
from proxy.models import LanguageModel  # noqa: E402

QUOTAS = {"BenchUnlimited": 100_000_000, "BenchExact": None, "BenchBudgeted": 100_000_000}  # None: QUOTA


def make_keys(quota: int, standin_url: str) -> dict[str, str]:
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"email": "bench@example.com"})
    LanguageModel.objects.update_or_create(
        name="bench-priced",
        defaults={"base_url": standin_url, "input_price": Decimal("0.15"), "output_price": Decimal("0.60")},
    )
    secrets = {}
    for name, fixed in QUOTAS.items():
        budget = Decimal(1_000_000) if name == "BenchBudgeted" else None
        token_quota = 10**12 if name == "BenchUnlimited" else None
        plan, _ = Plan.objects.update_or_create(
            name=name, defaults={"quota": fixed or quota, "period": "DAY", "budget": budget, "token_quota": token_quota}
        )
        secrets[name.removeprefix("Bench").lower()] = api_key_create(user=user, plan=plan)[1]
    return secrets


def bad_key(i: int) -> str:
    secret = tokens.generate_secret()  # unknown: nobody holds it
    if i % 3 == 1:
        return secret[:-1] + ("0" if secret[-1] != "0" else "1")  # its checksum broken
    if i % 3 == 2:
        return f"tg_{i:040d}!"  # not a key's shape at all
    return secret


if __name__ == "__main__":
    command, *args = sys.argv[1:] or [""]
    if command == "keys":
        print(json.dumps(make_keys(int(args[0]), args[1])))
    elif command == "usage":
        print(used_in_window(ApiKey.objects.active().get(plan__name="BenchExact"), timezone.now()))
    elif command == "bad-keys":
        Path(args[1]).write_text("".join(bad_key(i) + "\n" for i in range(int(args[0]))))
    else:
        sys.exit(__doc__)
