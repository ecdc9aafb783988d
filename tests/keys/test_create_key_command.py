from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from keys import tokens
from keys.models import ApiKey

pytestmark = pytest.mark.django_db


def test_it_prints_only_the_secret(alice):
    out = StringIO()
    call_command("create_key", "--user", alice.email, "--plan", "20RequestPerDay", stdout=out)
    secret = out.getvalue().strip()
    assert tokens.is_well_formed(secret)
    assert ApiKey.objects.get(owner=alice).digest == tokens.digest(secret)


@pytest.mark.parametrize(
    "user, plan, says",
    [("ghost@example.com", "10RequestPerDay", "No user"), ("alice@example.com", "Nope", "No plan named")],
)
def test_it_explains_bad_arguments(alice, user, plan, says):
    with pytest.raises(CommandError, match=says):
        call_command("create_key", "--user", user, "--plan", plan, stdout=StringIO())
    assert ApiKey.objects.count() == 0


def test_it_refuses_a_second_key_on_the_same_plan(alice):
    call_command("create_key", "--user", alice.email, "--plan", "10RequestPerDay", stdout=StringIO())
    with pytest.raises(CommandError, match="already has"):
        call_command("create_key", "--user", alice.email, "--plan", "10RequestPerDay", stdout=StringIO())
