from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from keys.models import Plan
from proxy.models import Fallback, LanguageModel

pytestmark = pytest.mark.django_db

GOOD = """
[[model]]
name = "fast"
base_url = "http://127.0.0.1:9000/v1"
upstream_model = "llama-3.1-8b"
api_key_env = "FAST_API_KEY"
max_output_tokens = 1024
fallbacks = ["backup", "spare"]

[[model]]
name = "backup"
base_url = "https://llm.example.com/v1"

[[model]]
name = "spare"
base_url = "https://spare.example.com/v1"
active = false

[[plan]]
name = "Starter"
requests = 100
period = "DAY"
models = ["fast", "backup"]
rate = 5
burst = 10
tokens = 50000
max_output_tokens = 512
description = "For trying things out."

[[plan]]
name = "Team"
requests = 20000
period = "MONTH"
"""

# The rest of every bad file: on its own it would change rows (a new model, new values, a new plan).
CHANGES = """
[[model]]
name = "backup"
base_url = "https://other.example.com/v1"

[[model]]
name = "extra"
base_url = "https://extra.example.com/v1"

[[plan]]
name = "Team"
requests = 5
period = "WEEK"
models = ["extra"]

[[plan]]
name = "New"
requests = 1
period = "DAY"
"""

LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)


def load(tmp_path: Path, text: str, *args: str) -> str:
    path = tmp_path / "tollgate.toml"
    path.write_text(text)
    out = StringIO()
    call_command("load_config", str(path), *args, stdout=out)
    return out.getvalue()


def snapshot() -> tuple[list, ...]:
    return (
        list(LanguageModel.objects.order_by("name").values()),
        list(Fallback.objects.order_by("model_id", "position").values()),
        list(Plan.objects.order_by("name").values()),
        list(Plan.models.through.objects.order_by("id").values()),
    )


def fallbacks_of(name: str) -> list[str]:
    return [link.to.name for link in Fallback.objects.filter(model__name=name).order_by("position")]


def granted_by(name: str) -> set[str]:
    return set(Plan.objects.get(name=name).models.values_list("name", flat=True))


def test_it_loads_models_fallbacks_plans_and_grants(tmp_path):
    out = load(tmp_path, GOOD)

    assert "models: 3 created, 0 updated, 0 unchanged, 0 deactivated" in out
    assert "plans: 2 created, 0 updated, 0 unchanged, 0 deactivated" in out
    fast = LanguageModel.objects.get(name="fast")
    assert (fast.base_url, fast.upstream_model, fast.api_key_env, fast.max_output_tokens, fast.active) == (
        "http://127.0.0.1:9000/v1",
        "llama-3.1-8b",
        "FAST_API_KEY",
        1024,
        True,
    )
    backup = LanguageModel.objects.get(name="backup")
    assert (backup.upstream_model, backup.api_key_env, backup.max_output_tokens) == ("", "", None)
    assert not LanguageModel.objects.get(name="spare").active
    assert fallbacks_of("fast") == ["backup", "spare"]
    assert fallbacks_of("backup") == []
    starter = Plan.objects.get(name="Starter")
    assert (starter.quota, starter.period, starter.rate_limit, starter.burst_limit) == (100, "DAY", 5, 10)
    assert (starter.token_quota, starter.max_output_tokens) == (50000, 512)
    assert starter.description == "For trying things out."
    assert granted_by("Starter") == {"fast", "backup"}
    team = Plan.objects.get(name="Team")
    assert (team.quota, team.period, team.rate_limit, team.burst_limit, team.active) == (
        20000,
        "MONTH",
        None,
        None,
        True,
    )
    assert (team.token_quota, team.max_output_tokens) == (None, None)


def test_loading_the_same_file_twice_changes_nothing(tmp_path):
    load(tmp_path, GOOD)
    # An old timestamp, so that any save on the second run shows.
    LanguageModel.objects.update(updated=LONG_AGO)
    before = snapshot()

    out = load(tmp_path, GOOD)

    assert snapshot() == before
    assert set(LanguageModel.objects.values_list("updated", flat=True)) == {LONG_AGO}
    assert "models: 0 created, 0 updated, 3 unchanged, 0 deactivated" in out
    assert "plans: 0 created, 0 updated, 2 unchanged, 0 deactivated" in out


def test_a_changed_file_updates_only_what_changed(tmp_path):
    load(tmp_path, GOOD)
    LanguageModel.objects.update(updated=LONG_AGO)
    changed = (
        GOOD.replace('upstream_model = "llama-3.1-8b"\n', "")  # left out: back to the default
        .replace('fallbacks = ["backup", "spare"]', 'fallbacks = ["spare", "backup"]')
        .replace('models = ["fast", "backup"]', "")  # left out: every active model
    )

    out = load(tmp_path, changed)

    assert "models: 0 created, 1 updated, 2 unchanged, 0 deactivated" in out
    assert "plans: 0 created, 1 updated, 1 unchanged, 0 deactivated" in out
    fast = LanguageModel.objects.get(name="fast")
    assert fast.upstream_model == ""
    assert fast.updated > LONG_AGO
    assert fallbacks_of("fast") == ["spare", "backup"]
    assert LanguageModel.objects.get(name="backup").updated == LONG_AGO
    assert granted_by("Starter") == set()


def test_a_token_budget_is_changed_and_left_out_to_remove_it(tmp_path):
    load(tmp_path, GOOD)

    out = load(tmp_path, GOOD.replace("tokens = 50000", "tokens = 75000"))

    assert "plans: 0 created, 1 updated, 1 unchanged" in out
    assert Plan.objects.get(name="Starter").token_quota == 75000

    out = load(tmp_path, GOOD.replace("tokens = 50000\n", "").replace("max_output_tokens = 512\n", ""))

    assert "plans: 0 created, 1 updated, 1 unchanged" in out
    starter = Plan.objects.get(name="Starter")
    assert (starter.token_quota, starter.max_output_tokens) == (None, None)


PRICED = (
    GOOD.replace(
        "max_output_tokens = 1024\n", 'max_output_tokens = 1024\ninput_price = "0.123457"\noutput_price = 0.6\n'
    )
    .replace(
        'base_url = "https://llm.example.com/v1"\n',
        'base_url = "https://llm.example.com/v1"\ninput_price = "999.999999"\noutput_price = "0.000001"\n',
    )
    .replace("tokens = 50000\n", 'tokens = 50000\nbudget = "12.345678"\n')
    .replace('period = "MONTH"\n', 'period = "MONTH"\nbudget = 1000000\n')
)


def test_prices_and_budgets_load_exactly_and_a_second_load_changes_nothing(tmp_path):
    load(tmp_path, PRICED)

    fast, backup = LanguageModel.objects.get(name="fast"), LanguageModel.objects.get(name="backup")
    assert (fast.input_price, fast.output_price) == (Decimal("0.123457"), Decimal("0.6"))
    assert (backup.input_price, backup.output_price) == (Decimal("999.999999"), Decimal("0.000001"))
    assert LanguageModel.objects.get(name="spare").input_price is None  # left out: free
    assert Plan.objects.get(name="Starter").budget == Decimal("12.345678")
    assert Plan.objects.get(name="Team").budget == Decimal("1000000")
    LanguageModel.objects.update(updated=LONG_AGO)
    before = snapshot()

    out = load(tmp_path, PRICED)

    assert "models: 0 created, 0 updated, 3 unchanged" in out
    assert "plans: 0 created, 0 updated, 2 unchanged" in out
    assert snapshot() == before


def test_a_budget_is_refused_when_the_aws_backend_counts_the_requests(tmp_path, apigw):
    assert_refused(
        tmp_path,
        CHANGES + PLAN + 'requests = 10\nbudget = "5.00"\n',
        'plan "Starter": budget: the aws backend counts requests only, not money',
    )


def test_a_new_fallback_order_alone_counts_as_an_update(tmp_path):
    load(tmp_path, GOOD)
    LanguageModel.objects.update(updated=LONG_AGO)

    out = load(tmp_path, GOOD.replace('["backup", "spare"]', '["spare", "backup"]'))

    assert "models: 0 created, 1 updated, 2 unchanged" in out
    assert fallbacks_of("fast") == ["spare", "backup"]
    assert LanguageModel.objects.get(name="fast").updated > LONG_AGO


def test_prune_deactivates_the_models_and_plans_the_file_does_not_name(tmp_path, seed_plans):
    load(tmp_path, GOOD)
    only_fast = """
[[model]]
name = "fast"
base_url = "http://127.0.0.1:9000/v1"

[[plan]]
name = "Team"
requests = 20000
period = "MONTH"
"""

    out = load(tmp_path, only_fast, "--prune")

    # "spare" was inactive already, so it is not counted.
    assert "models: 0 created, 1 updated, 0 unchanged, 1 deactivated" in out
    assert f"plans: 0 created, 0 updated, 1 unchanged, {1 + len(seed_plans)} deactivated" in out
    assert set(LanguageModel.objects.filter(active=True).values_list("name", flat=True)) == {"fast"}
    assert set(Plan.objects.filter(active=True).values_list("name", flat=True)) == {"Team"}
    assert LanguageModel.objects.count() == 3  # deactivated, not deleted


def test_without_prune_the_rows_the_file_does_not_name_stay_as_they_are(tmp_path, seed_plans):
    load(tmp_path, GOOD)

    load(tmp_path, '[[model]]\nname = "fast"\nbase_url = "http://127.0.0.1:9000/v1"\n')

    assert LanguageModel.objects.get(name="backup").active
    assert Plan.objects.filter(active=True).count() == 2 + len(seed_plans)


def test_a_fallback_may_name_a_model_that_only_the_database_knows(tmp_path):
    load(tmp_path, GOOD)

    load(tmp_path, '[[model]]\nname = "new"\nbase_url = "https://new.example.com/v1"\nfallbacks = ["backup"]\n')

    assert fallbacks_of("new") == ["backup"]


def test_the_example_file_loads(tmp_path):
    example = Path(__file__).resolve().parents[2] / "tollgate.example.toml"

    load(tmp_path, example.read_text())

    assert fallbacks_of("fast") == ["backup"]
    assert granted_by("Starter") == {"fast"}
    assert granted_by("Team") == set()
    starter, team = Plan.objects.get(name="Starter"), Plan.objects.get(name="Team")
    assert (starter.token_quota, starter.max_output_tokens) == (50000, 512)
    assert (team.token_quota, team.max_output_tokens) == (None, None)
    fast, embed = LanguageModel.objects.get(name="fast"), LanguageModel.objects.get(name="embed")
    assert (fast.endpoints, fast.context_window, fast.max_media_tokens) == (
        ["chat", "completions", "responses"],
        131072,
        3000,
    )
    assert (fast.extra_fields, embed.endpoints, embed.context_window) == (["top_k"], ["embeddings"], None)
    assert (fast.input_price, fast.output_price, starter.budget) == (Decimal("0.15"), Decimal("0.60"), Decimal("5"))


MODEL = '\n[[model]]\nbase_url = "https://broken.example.com/v1"\n'
PLAN = '\n[[plan]]\nname = "Starter"\nperiod = "DAY"\n'


@pytest.mark.parametrize(
    "bad, says",
    [
        (MODEL + 'name = "broken"\nbase_ur = "x"\n', 'model "broken": unknown field "base_ur"'),
        ('\n[[model]]\nname = "broken"\n', 'model "broken": missing field "base_url"'),
        (MODEL, 'model #1: missing field "name"'),
        (MODEL + 'name = ""\n', "model #1: name must be a non-empty string"),
        (MODEL + "name = 7\n", "model #1: name must be a non-empty string, not 7"),
        (
            '\n[[model]]\nname = "broken"\nbase_url = "ftp://files.example.com/v1"\n',
            'model "broken": base_url must be an http:// or https:// URL, not "ftp://files.example.com/v1"',
        ),
        (
            '\n[[model]]\nname = "broken"\nbase_url = "http://not a host/v1"\n',
            'model "broken": base_url "http://not a host/v1" is refused: Enter a valid URL.',
        ),
        (MODEL + 'name = "broken"\napi_key_env = "FAST-KEY"\n', 'model "broken": api_key_env "FAST-KEY" is refused'),
        (MODEL + 'name = "broken"\napi_key_env = 5\n', 'model "broken": api_key_env must be a string, not 5'),
        (MODEL + 'name = "extra"\n', 'model "extra": the name is used by two [[model]] entries'),
        (MODEL + 'name = "broken"\nfallbacks = ["ghost"]\n', 'model "broken": fallbacks: no model is named "ghost"'),
        (MODEL + 'name = "broken"\nfallbacks = ["broken"]\n', 'model "broken": fallbacks: a model cannot fall back to'),
        (MODEL + 'name = "broken"\nfallbacks = "extra"\n', 'model "broken": fallbacks must be a list of model names'),
        (MODEL + 'name = "broken"\nfallbacks = ["extra", "extra"]\n', 'model "broken": fallbacks names "extra" twice'),
        (
            MODEL + 'name = "broken"\nmax_output_tokens = 0\n',
            'model "broken": max_output_tokens must be at least 1, not 0',
        ),
        (MODEL + 'name = "broken"\nmax_output_tokens = -1\n', 'model "broken": max_output_tokens must be at least 1'),
        (
            MODEL + 'name = "broken"\nendpoints = ["chat", "images"]\n',
            'model "broken": endpoints ["chat", "images"] is refused',
        ),
        (MODEL + 'name = "broken"\nendpoints = []\n', 'model "broken": endpoints [] is refused'),
        (MODEL + 'name = "broken"\nendpoints = "chat"\n', 'model "broken": endpoints must be a list of endpoints'),
        (MODEL + 'name = "broken"\ncontext_window = 0\n', 'model "broken": context_window must be at least 1, not 0'),
        (MODEL + 'name = "broken"\nmax_media_tokens = -1\n', 'model "broken": max_media_tokens must be at least 1'),
        (MODEL + 'name = "broken"\nextra_fields = ["top k"]\n', 'model "broken": extra_fields ["top k"] is refused'),
        (MODEL + 'name = "broken"\nactive = "yes"\n', 'model "broken": active must be true or false, not "yes"'),
        (
            '\n[[plan]]\nname = "Starter"\nrequests = 100\nperiod = "YEAR"\n',
            'plan "Starter": period must be DAY, WEEK or MONTH, not "YEAR"',
        ),
        (PLAN + "requests = -5\n", 'plan "Starter": requests must be at least 1, not -5'),
        (PLAN + "requests = 0\n", 'plan "Starter": requests must be at least 1, not 0'),
        (PLAN + "requests = 1.5\n", 'plan "Starter": requests must be a whole number, not 1.5'),
        (PLAN + 'requests = "100"\n', 'plan "Starter": requests must be a whole number, not "100"'),
        (PLAN + "requests = 10\nrate = true\n", 'plan "Starter": rate must be a whole number, not true'),
        (PLAN + "requests = 10\nburst = -1\n", 'plan "Starter": burst must be at least 1, not -1'),
        (PLAN, 'plan "Starter": missing field "requests"'),
        (PLAN + "requests = 10\ntoken = 500\n", 'plan "Starter": unknown field "token"'),
        (PLAN + "requests = 10\ntokens = 0\n", 'plan "Starter": tokens must be at least 1, not 0'),
        (PLAN + 'requests = 10\ntokens = "50k"\n', 'plan "Starter": tokens must be a whole number, not "50k"'),
        (PLAN + "requests = 10\ntokens = 5e4\n", 'plan "Starter": tokens must be a whole number, not 50000.0'),
        (
            PLAN + "requests = 10\ntokens = 99999999999999999999\n",
            'plan "Starter": tokens 99999999999999999999 is refused: Ensure this value is less than or equal to',
        ),
        (PLAN + "requests = 10\nmax_output_tokens = -3\n", 'plan "Starter": max_output_tokens must be at least 1'),
        (
            PLAN + "requests = 100000001\n",
            'plan "Starter": requests 100000001 is refused: Ensure this value is less than or equal to 100000000.',
        ),
        (
            PLAN + "requests = 10\ntokens = 1000000000000001\n",
            'plan "Starter": tokens 1000000000000001 is refused: Ensure this value is less than or equal to',
        ),
        (
            PLAN + "requests = 10\nmax_output_tokens = 2147483648\n",
            'plan "Starter": max_output_tokens 2147483648 is refused: Ensure this value is less than or equal to',
        ),
        (
            PLAN + "requests = 10\nrate = 1000001\n",
            'plan "Starter": rate 1000001 is refused: Ensure this value is less than or equal to 1000000.',
        ),
        (
            PLAN + "requests = 10\nburst = 9223372036854775807\n",
            'plan "Starter": burst 9223372036854775807 is refused: Ensure this value is less than or equal to',
        ),
        (
            MODEL + 'name = "broken"\nmax_output_tokens = 2147483648\n',
            'model "broken": max_output_tokens 2147483648 is refused: Ensure this value is less than or equal to',
        ),
        (
            PLAN + "requests = 10\nmax_output_tokens = false\n",
            'plan "Starter": max_output_tokens must be a whole number, not false',
        ),
        (PLAN + "requests = 10\ndescription = 5\n", 'plan "Starter": description must be a string, not 5'),
        (PLAN + 'requests = 10\nmodels = "fast"\n', 'plan "Starter": models must be a list of model names, not "fast"'),
        (PLAN + "requests = 10\nmodels = [1]\n", 'plan "Starter": models must be a list of model names, not [1]'),
        (PLAN + 'requests = 10\nmodels = ["ghost"]\n', 'plan "Starter": models: no model is named "ghost"'),
        (
            '\n[[plan]]\nname = "' + "x" * 70 + '"\nrequests = 1\nperiod = "DAY"\n',
            'name "' + "x" * 70 + '" is refused: Ensure this value has at most 64 characters',
        ),
        # Prices: decimals of the currency per million tokens, never below zero, at most 6 decimals.
        (
            MODEL + 'name = "broken"\ninput_price = "-0.15"\n',
            'model "broken": input_price must be zero or more, not "-0.15"',
        ),
        (MODEL + 'name = "broken"\noutput_price = -1\n', 'model "broken": output_price must be zero or more, not -1'),
        (
            MODEL + 'name = "broken"\ninput_price = "0.1234567"\n',
            'model "broken": input_price must be at most 6 decimals, not "0.1234567"',
        ),
        (
            MODEL + 'name = "broken"\noutput_price = 0.0000001\n',
            'model "broken": output_price must be at most 6 decimals, not 1e-07',
        ),
        (
            MODEL + 'name = "broken"\ninput_price = "cheap"\n',
            'model "broken": input_price must be a decimal string such as "0.15", not "cheap"',
        ),
        (
            MODEL + 'name = "broken"\ninput_price = true\n',
            'model "broken": input_price must be a decimal string such as "0.15", not true',
        ),
        (
            MODEL + 'name = "broken"\noutput_price = ["0.60"]\n',
            'model "broken": output_price must be a decimal string such as "0.15", not ["0.60"]',
        ),
        (MODEL + 'name = "broken"\ninput_price = nan\n', 'model "broken": input_price must be zero or more, not NaN'),
        (MODEL + 'name = "broken"\noutput_price = inf\n', 'model "broken": output_price must be zero or more'),
        (
            MODEL + 'name = "broken"\ninput_price = "1000.000001"\n',
            'model "broken": input_price "1000.000001" is refused: Ensure this value is less than or equal to 1000.',
        ),
        # Budgets: money per period, more than nothing, at most 6 decimals.
        (
            PLAN + 'requests = 10\nbudget = "0"\n',
            'plan "Starter": budget "0" is refused: Ensure this value is greater than or equal to 0.000001.',
        ),
        (
            PLAN + "requests = 10\nbudget = 0\n",
            'plan "Starter": budget 0 is refused: Ensure this value is greater than or equal to 0.000001.',
        ),
        (PLAN + "requests = 10\nbudget = -5\n", 'plan "Starter": budget must be zero or more, not -5'),
        (PLAN + 'requests = 10\nbudget = "-0.01"\n', 'plan "Starter": budget must be zero or more, not "-0.01"'),
        (
            PLAN + 'requests = 10\nbudget = "5.0000001"\n',
            'plan "Starter": budget must be at most 6 decimals, not "5.0000001"',
        ),
        (
            PLAN + 'requests = 10\nbudget = "lots"\n',
            'plan "Starter": budget must be a decimal string such as "0.15", not "lots"',
        ),
        (
            PLAN + "requests = 10\nbudget = false\n",
            'plan "Starter": budget must be a decimal string such as "0.15", not false',
        ),
        (
            PLAN + 'requests = 10\nbudget = "1000000.000001"\n',
            'plan "Starter": budget "1000000.000001" is refused: Ensure this value is less than or equal to 1000000.',
        ),
        ('\n[[models]]\nname = "broken"\n', 'unknown top-level key "models"'),
        ('\ntitle = "mine"\n', 'unknown top-level key "title"'),
    ],
)
def test_a_bad_file_is_refused_with_a_message_naming_entry_and_field_and_changes_nothing(tmp_path, bad, says):
    assert_refused(tmp_path, bad + CHANGES, says)


def assert_refused(tmp_path: Path, text: str, says: str) -> None:
    load(tmp_path, GOOD)
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        load(tmp_path, text, "--prune")

    assert says in str(refused.value)
    assert "(nothing was changed)" in str(refused.value)
    assert snapshot() == before


def test_invalid_toml_is_refused_with_its_line_and_column(tmp_path):
    assert_refused(tmp_path, CHANGES + '\n[[model]]\nname = "broken\n', "is not valid TOML: Illegal character")
    text = CHANGES + "\n[[model]]\nname = \n"
    assert_refused(tmp_path, text, f"Invalid value (at line {text.count(chr(10))}, column 8)")


def test_a_single_table_is_refused_as_it_should_be_a_list_of_them(tmp_path):
    assert_refused(tmp_path, '[model]\nname = "fast"\nbase_url = "https://x.example.com/v1"\n', "model must be a list")


def test_two_plans_of_the_same_name_are_refused(tmp_path):
    assert_refused(
        tmp_path, CHANGES + PLAN + "requests = 1\n" + PLAN + "requests = 2\n", 'plan "Starter": the name is used'
    )


def test_a_fallback_cycle_in_the_file_is_refused(tmp_path):
    cycle = """
[[model]]
name = "a"
base_url = "https://a.example.com/v1"
fallbacks = ["b"]

[[model]]
name = "b"
base_url = "https://b.example.com/v1"
fallbacks = ["c"]

[[model]]
name = "c"
base_url = "https://c.example.com/v1"
fallbacks = ["extra", "a"]
"""
    assert_refused(tmp_path, cycle + CHANGES, 'model "a": fallbacks make a cycle: a → b → c → a')


def test_a_fallback_cycle_through_a_model_only_the_database_knows_is_refused(tmp_path):
    # The database has fast → backup, spare; the file leaves "fast" alone.
    through_fast = CHANGES.replace(
        'base_url = "https://other.example.com/v1"', 'base_url = "https://other.example.com/v1"\nfallbacks = ["fast"]'
    )
    assert_refused(tmp_path, through_fast, 'model "backup": fallbacks make a cycle: backup → fast → backup')


def test_a_file_that_cannot_be_read_is_refused(tmp_path):
    with pytest.raises(CommandError, match="cannot be read: No such file"):
        call_command("load_config", str(tmp_path / "missing.toml"), stdout=StringIO())


def test_the_admin_lists_and_edits_models_without_showing_the_key(admin_client, monkeypatch, tmp_path):
    monkeypatch.setenv("FAST_API_KEY", "sk-canary-8c1f0e7d")
    monkeypatch.delenv("BACKUP_API_KEY", raising=False)
    load(
        tmp_path,
        GOOD.replace(
            'base_url = "https://llm.example.com/v1"',
            'base_url = "https://llm.example.com/v1"\napi_key_env = "BACKUP_API_KEY"',
        ),
    )
    fast = LanguageModel.objects.get(name="fast")

    listing = admin_client.get("/admin/proxy/languagemodel/")
    change = admin_client.get(f"/admin/proxy/languagemodel/{fast.pk}/change/")
    add = admin_client.get("/admin/proxy/languagemodel/add/")

    assert (listing.status_code, change.status_code, add.status_code) == (HTTPStatus.OK,) * 3
    for page in (listing, change, add):
        assert "sk-canary-8c1f0e7d" not in page.content.decode()
    assert 'class="field-api_key_status">set<' in listing.content.decode()
    assert 'class="field-api_key_status">not set<' in listing.content.decode()
    assert '<div class="readonly">set</div>' in change.content.decode()
    assert "FAST_API_KEY" in change.content.decode()
    assert 'name="fallback_links-0-to"' in change.content.decode()


def test_the_plan_admin_picks_the_granted_models(admin_client, tmp_path):
    load(tmp_path, GOOD)
    starter = Plan.objects.get(name="Starter")

    page = admin_client.get(f"/admin/keys/plan/{starter.pk}/change/")

    assert page.status_code == HTTPStatus.OK
    assert 'id="id_models"' in page.content.decode()
    assert "selectfilter" in page.content.decode().lower()


def test_the_plan_admin_lists_and_edits_the_token_budget(admin_client, tmp_path):
    load(tmp_path, GOOD)
    starter = Plan.objects.get(name="Starter")
    change_url = f"/admin/keys/plan/{starter.pk}/change/"

    listing = admin_client.get("/admin/keys/plan/").content.decode()
    form = admin_client.get(change_url).content.decode()

    assert "Token budget" in listing
    assert '<td class="field-token_quota">50000</td>' in listing
    assert 'name="token_quota" value="50000"' in form
    assert 'name="max_output_tokens" value="512"' in form

    edited = {
        "name": "Starter", "quota": 100, "period": "DAY", "token_quota": 1234, "max_output_tokens": "",
        "description": "", "active": "on", "models": [m.pk for m in starter.models.all()],
    }  # fmt: skip
    response = admin_client.post(change_url, edited)

    assert response.status_code == HTTPStatus.FOUND
    starter.refresh_from_db()
    assert (starter.token_quota, starter.max_output_tokens) == (1234, None)


def test_the_plan_admin_refuses_numbers_past_their_bounds(admin_client, tmp_path):
    load(tmp_path, GOOD)
    starter = Plan.objects.get(name="Starter")
    edited = {
        "name": "Starter", "quota": 10**12, "period": "DAY", "token_quota": 10**16, "max_output_tokens": 2**31,
        "rate_limit": 10**7, "burst_limit": "", "description": "", "active": "on",
    }  # fmt: skip

    response = admin_client.post(f"/admin/keys/plan/{starter.pk}/change/", edited)

    assert response.status_code == HTTPStatus.OK  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"quota", "token_quota", "max_output_tokens", "rate_limit"}
    starter.refresh_from_db()
    assert (starter.quota, starter.token_quota, starter.max_output_tokens) == (100, 50000, 512)
