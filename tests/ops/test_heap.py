"""What a server process loads at startup is left out of the garbage collector's passes (portal/asgi.py)."""

import json
import os
import subprocess
import sys

from loopback.servers import ROOT

STARTED = """
import gc, json, sys
import portal.asgi
from django.conf import settings
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "collected": len(gc.get_objects()),
    "urls_loaded": settings.ROOT_URLCONF in sys.modules,
}))
"""


def test_what_the_app_loads_at_startup_is_frozen_out_of_the_full_collections():
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "portal.settings", "DJANGO_DEBUG": "1"}
    started = subprocess.run([sys.executable, "-c", STARTED], cwd=ROOT, env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    heap = json.loads(started.stdout.strip().splitlines()[-1])

    # Django, the apps and the libraries: tens of thousands of objects, frozen with the URLs and views.
    assert heap["frozen"] > 50_000
    assert heap["urls_loaded"]
    # A full collection goes through only what was made after startup: here, almost nothing.
    assert heap["collected"] < heap["frozen"] / 100
