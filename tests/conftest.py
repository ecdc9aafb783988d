import boto3
import pytest
from django.core.cache import cache
from moto import mock_aws

from keys import services
from keys.models import Plan
from proxy.catalog import snapshot
from tests import asgi
from tests.servers import standin_upstream, tollgate_server

PASSWORD = "correct horse battery staple 42"


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
    """A test's request-log rows and settlements are written before its database goes away."""
    yield
    if "transactional_db" in request.fixturenames or "live" in request.fixturenames:
        asgi.settle()


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


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", is_staff=True)


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
def make_plan(db):
    def make(name: str = "Tiny", quota: int = 3, period: str = "DAY", **extra) -> Plan:
        return Plan.objects.create(name=name, quota=quota, period=period, **extra)

    return make


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
def standin():
    with standin_upstream() as app:
        yield app


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
        headers = {"x-api-key": secret} if secret is not None else {}
        return asgi.fetch("get", "/query", data={"message": message, **params}, headers=headers)

    return call
