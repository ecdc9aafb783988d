import logging
import os
import re
import time

import boto3
import pyotp
import pytest
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.cache import cache
from moto import mock_aws
from pythonjsonlogger.json import JsonFormatter

from keys import services, tokens
from keys.models import ApiKey, Plan
from loopback.mail import smtp_server
from loopback.servers import tollgate_server
from loopback.standin import standin_upstream
from proxy.catalog import snapshot
from proxy.models import LanguageModel
from tests import asgi

PASSWORD = "correct horse battery staple 42"
SECRET_SHAPE = re.compile(rf"{tokens.PREFIX}[0-9A-Za-z]{{{tokens.BODY_LENGTH + tokens.CHECKSUM_LENGTH}}}")


@pytest.fixture(autouse=True)
def fresh_cache():
    # allauth's and django-ratelimit's counters live in the default cache; the model catalog's
    # snapshot would outlive a flushed database.
    cache.clear()
    snapshot.forget()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def settled_ledger(request):
    """What a test left in the app's ledger (request-log rows, settlements, failed
    authentications) is written before its database is emptied, never into the next test's, and
    the next test starts with a ledger of its own.
    (pytest-django's marker fixture is set up before this one, so it is torn down after.)"""
    if "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    yield
    if asgi.started():
        asgi.close_ledger()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_the_logs(tmp_path_factory):
    """Every log line of the run, this process's and those of the servers the tests start
    (loopback/servers.py `run_log`), also goes to one file, in JSON with every field. At the end, no
    key secret may be in it: none of those issued during the run, nor any other well-formed one
    (a server issues keys of its own for the browser tests)."""
    import portal.asgi  # noqa: F401 - it sets up Django, and so logging, again: before the handler is added

    path = tmp_path_factory.mktemp("logs") / "run.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    os.environ["TOLLGATE_TEST_LOG"] = str(path)
    issued: set[str] = set()
    generate = tokens.generate_secret

    def generate_and_remember() -> str:
        issued.add(secret := generate())
        return secret

    tokens.generate_secret = generate_and_remember
    yield path
    tokens.generate_secret = generate
    del os.environ["TOLLGATE_TEST_LOG"]
    logging.getLogger().removeHandler(handler)
    handler.close()
    shaped = set(SECRET_SHAPE.findall(path.read_text(errors="replace")))
    leaked = {found for found in shaped if found in issued or tokens.is_well_formed(found)}
    assert not leaked, f"{len(leaked)} key secrets in this run's logs, such as {tokens.mask(min(leaked))}"


@pytest.fixture(scope="session", autouse=True)
def app_loop(django_db_setup):
    """The event loop of tests/asgi.py, closed before the test database goes away."""
    yield
    asgi.close()


@pytest.fixture
def make_user(django_user_model):
    def make(email: str = "alice@example.com", **extra):
        return django_user_model.objects.create_user(
            username=email.split("@")[0] + str(django_user_model.objects.count()),
            email=email,
            password=PASSWORD,
            **extra,
        )

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice@example.com")


@pytest.fixture
def bob(make_user):
    return make_user("bob@example.com")


def totp_code(secret: str) -> str:
    """The code an authenticator app shows now, never one about to expire on the way to the server."""
    totp = pyotp.TOTP(secret)
    if totp.interval - time.time() % totp.interval < 2:
        time.sleep(2)
    return totp.now()


def enrol_totp(user) -> str:
    """Give `user` an authenticator app, with recovery codes, as the 2FA pages would. Returns its secret."""
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    RecoveryCodes.activate(user)
    return secret


@pytest.fixture
def staff(make_user):
    """A staff member with a second factor, as the admin requires (STAFF_MFA_REQUIRED)."""
    user = make_user("staff@example.com", is_staff=True)
    enrol_totp(user)
    return user


@pytest.fixture
def admin_user(admin_user):
    """pytest-django's superuser (and so `admin_client`), with a second factor, as the admin requires."""
    enrol_totp(admin_user)
    return admin_user


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


SEED = [("10RequestPerDay", 10), ("20RequestPerDay", 20), ("30RequestPerDay", 30)]


@pytest.fixture
def seed_plans(db):
    """The plans the data migration makes (transactional tests flush them away, so remake them)."""
    return [Plan.objects.get_or_create(name=name, defaults={"quota": quota})[0] for name, quota in SEED]


@pytest.fixture
def plan10(seed_plans):
    return seed_plans[0]


@pytest.fixture
def alices_key_and_secret(alice, plan10, make_key) -> tuple[ApiKey, str]:
    """Alice's key on the 10-a-day plan, and its secret (shown once, so kept here)."""
    return make_key(alice, plan10)


@pytest.fixture
def alices_key(alices_key_and_secret) -> ApiKey:
    return alices_key_and_secret[0]


@pytest.fixture
def secret(alices_key_and_secret) -> str:
    """The secret of `alices_key`."""
    return alices_key_and_secret[1]


@pytest.fixture
def bobs_key(bob, plan10, make_key) -> ApiKey:
    return make_key(bob, plan10)[0]


@pytest.fixture
def make_plan(db):
    def make(name: str = "Tiny", quota: int = 3, period: str = "DAY", *, models=(), **extra) -> Plan:
        """A plan; `models` are those it grants (none listed: every active model)."""
        plan = Plan.objects.create(name=name, quota=quota, period=period, **extra)
        plan.models.set(models)
        return plan

    return make


@pytest.fixture
def plan_of_two_models(make_plan, standin):
    """A plan, "Several", that grants `demo` (the default model) and `standin` (the stand-in model, reset,
    known upstream as `standin-upstream`); a third model, `other`, it does not grant."""
    standin.reset()
    demo = LanguageModel.objects.create(name="demo", base_url="")
    base_url = standin.url + "/v1"
    picked = LanguageModel.objects.create(name="standin", base_url=base_url, upstream_model="standin-upstream")
    LanguageModel.objects.create(name="other", base_url="")
    plan = make_plan("Several", quota=10)
    plan.models.set([demo, picked])
    return plan


@pytest.fixture
def make_key(db):
    def make(user, plan):
        key, secret = services.api_key_create(user=user, plan=plan)
        return key, secret

    return make


@pytest.fixture
def apigw(settings):
    """The aws backend against moto's API Gateway (ap-southeast-1)."""
    settings.KEYS_BACKEND = "aws"
    # The client must be made inside the mock, or it talks to the real AWS.
    with mock_aws():
        yield boto3.client("apigateway", region_name="ap-southeast-1")


@pytest.fixture(scope="session")
def standins():
    """Two stand-in models, each on a loopback port of its own."""
    with standin_upstream() as first, standin_upstream() as second:
        yield first, second


@pytest.fixture(scope="session")
def standin(standins):
    return standins[0]


@pytest.fixture
def second(standins):
    """The other stand-in model, reset: an upstream of its own for fallbacks and health probes."""
    second = standins[1]
    second.reset()
    yield second
    second.reset()


@pytest.fixture
def upstream(standin, settings):
    """The stand-in model, reset, with Tollgate (in this process) pointed at it."""
    standin.reset()
    settings.LLM_BASE_URL = standin.url + "/v1"
    yield standin
    standin.reset()


@pytest.fixture(scope="session")
def live_tollgate(django_db_setup, standin):
    """Tollgate under uvicorn (one worker), relaying to the stand-in model."""
    with tollgate_server(env={"LLM_BASE_URL": standin.url + "/v1", "LLM_READ_TIMEOUT": "2"}) as base:
        yield base


@pytest.fixture
def live(live_tollgate, standin, transactional_db):
    standin.reset()
    yield live_tollgate
    standin.reset()


@pytest.fixture
def spend(transactional_db):
    """`/query` with a key, through the app as production mounts it."""

    def call(secret: str | None, message: str = "hello", **params) -> asgi.Fetched:
        return asgi.query(secret, message=message, **params)

    return call


@pytest.fixture(scope="session")
def smtp_sink():
    with smtp_server() as sink:
        yield sink


@pytest.fixture
def smtp(smtp_sink):
    """An SMTP server on a real socket, emptied of earlier tests' messages."""
    smtp_sink.messages.clear()
    return smtp_sink


@pytest.fixture
def mail_over_smtp(settings):
    """Django's mail, in this process, over SMTP to a port on loopback: `mail_over_smtp(smtp.port)`,
    or a port where nothing listens, or a server that hangs."""

    def point(port: int, *, timeout: float = 10) -> None:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_USE_TLS, settings.EMAIL_TIMEOUT = False, timeout

    return point


SITE_URL = "https://tollgate.example.com"
FROM_EMAIL = "Tollgate <accounts@tollgate.example.com>"


@pytest.fixture(scope="session")
def mail_tollgate(django_db_setup, smtp_sink):
    """Tollgate under uvicorn as production runs it: DEBUG off, email verification mandatory, mail
    over SMTP to `smtp`. People know it as SITE_URL, not as the loopback address the tests use."""
    env = {
        "DJANGO_DEBUG": "0",
        "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_sink.port),
        "EMAIL_USE_TLS": "0",
        "EMAIL_TIMEOUT": "5",
        "DEFAULT_FROM_EMAIL": FROM_EMAIL,
        "SITE_URL": SITE_URL,
    }
    with tollgate_server(env=env) as base:
        yield base


@pytest.fixture
def mail_live(mail_tollgate, smtp, transactional_db):
    """The base URL of `mail_tollgate`, for a test whose `smtp` starts empty."""
    return mail_tollgate
