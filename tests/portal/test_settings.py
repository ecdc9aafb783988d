"""The settings rules, checked in fresh processes as an operator would run them."""

import os
import subprocess
import sys

import pytest

from loopback.servers import ROOT


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({"DJANGO_DEBUG": "0"}, "DJANGO_SECRET_KEY", id="no-secret-key-when-not-debug"),
        pytest.param({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG", id="a-bad-boolean"),
        pytest.param({"DJANGO_DEBUG": "1", "KEYS_BACKEND": "gcp"}, "KEYS_BACKEND", id="an-unknown-backend"),
        pytest.param(
            {"DJANGO_DEBUG": "1", "EMAIL_HOST": "mail.example.com", "EMAIL_TIMEOUT": "0"},
            "EMAIL_TIMEOUT",
            id="a-zero-email-timeout",
        ),
        pytest.param(
            {"DJANGO_DEBUG": "1", "SITE_URL": "https://example.com/portal"}, "SITE_URL", id="a-site-url-with-a-path"
        ),
    ],
)
def test_a_bad_setting_is_refused_at_start_with_its_name(env, named):
    result = manage("check", **env)
    assert result.returncode != 0
    assert named in result.stderr


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


def test_debug_runs_without_a_secret_key():
    assert manage("check", DJANGO_DEBUG="1").returncode == 0


def test_the_smtp_settings_reach_the_mail_backend():
    show = "from django.core import mail; b = mail.get_connection(); print(b.host, b.port, b.use_tls, b.timeout)"
    smtp = {"EMAIL_HOST": "mail.example.com", "EMAIL_PORT": "2525", "EMAIL_TIMEOUT": "7"}
    result = manage("shell", "-v", "0", "-c", show, DJANGO_DEBUG="1", **smtp)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mail.example.com", "2525", "True", "7"]


def test_real_mail_without_a_site_url_is_refused_when_not_debug():
    secret = "k" * 10 + "-a-long-random-production-secret-0123456789-abcdefghijklmnop"
    result = manage("check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=secret, EMAIL_HOST="mail.example.com")
    assert result.returncode != 0
    assert "SITE_URL is not set" in result.stderr
    with_site = manage(
        "check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=secret, EMAIL_HOST="mail.example.com", SITE_URL="https://t.example"
    )
    assert with_site.returncode == 0, with_site.stderr
