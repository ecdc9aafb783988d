import boto3
import pytest
from django.core.cache import cache
from moto import mock_aws

from keys import services
from keys.models import Plan

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(autouse=True)
def fresh_cache():
    # allauth's and django-ratelimit's counters live in the default cache.
    cache.clear()
    yield
    cache.clear()


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
