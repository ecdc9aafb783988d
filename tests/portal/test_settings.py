"""The settings rules, checked in fresh processes as an operator would run them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_it_refuses_to_start_without_a_secret_key_when_not_debug():
    result = manage("check", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_the_deploy_check_is_clean_with_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="k" * 10 + "-a-long-random-production-secret-0123456789-abcdefghijklmnop",
        DJANGO_ALLOWED_HOSTS="tollgate.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_boolean_is_refused_with_its_name():
    result = manage("check", DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert "DJANGO_DEBUG" in result.stderr


def test_an_unknown_backend_is_refused_with_its_name():
    result = manage("check", DJANGO_DEBUG="1", KEYS_BACKEND="gcp")
    assert result.returncode != 0
    assert "KEYS_BACKEND" in result.stderr


def test_debug_runs_without_a_secret_key():
    assert manage("check", DJANGO_DEBUG="1").returncode == 0
