"""Issue 24: the model catalog read from real rows, without HTTP: what a plan may use, the route of
fallbacks, prices, and a snapshot that a saved row makes stale."""

from decimal import Decimal

import pytest

from keys import money
from proxy import catalog as catalog_module
from proxy.budget import TokenCount
from proxy.catalog import catalog, catalog_build
from proxy.models import Fallback, LanguageModel
from tests.asgi import portal

CHAT_ONLY, EMBEDDINGS_TOO = ["chat"], ["chat", "embeddings"]


@pytest.fixture
def models(db, settings):
    """`fast` falls back to `retired` (inactive), `steady`, `cheap` (chat only) and `vectors`
    (embeddings only), in position order, which is neither their names' nor their links' order. No
    model of the environment: the rows are the catalog."""
    settings.LLM_BASE_URL, settings.LLM_MODEL = "", "fast"
    rows = {
        name: LanguageModel.objects.create(name=name, base_url="", endpoints=endpoints, active=active)
        for name, endpoints, active in [
            ("fast", EMBEDDINGS_TOO, True),
            ("steady", EMBEDDINGS_TOO, True),
            ("cheap", CHAT_ONLY, True),
            ("retired", EMBEDDINGS_TOO, False),
            ("vectors", ["embeddings"], True),
        ]
    }
    for position, name in [(2, "cheap"), (1, "steady"), (0, "retired"), (3, "vectors")]:
        Fallback.objects.create(model=rows["fast"], to=rows[name], position=position)
    return rows


def names(served) -> list[str]:
    return [model.name for model in served]


def test_a_plan_is_granted_the_models_it_lists_and_the_default_when_none_is_asked(models, make_plan):
    listing = make_plan("Listing")
    listing.models.set([models["fast"], models["cheap"], models["retired"]])
    everything = make_plan("Everything")
    built = catalog_build()

    assert built.granted(listing.pk, "cheap").name == "cheap"
    assert built.granted(listing.pk, None).name == "fast"  # LLM_MODEL
    assert built.granted(listing.pk, "steady") is None  # not listed
    assert built.granted(listing.pk, "retired") is None  # listed, but inactive
    assert built.granted(listing.pk, "nonexistent") is None
    assert built.granted(everything.pk, "steady").name == "steady"  # a plan listing none may use any
    assert names(built.for_plan(listing.pk)) == ["cheap", "fast"]
    assert names(built.for_plan(everything.pk)) == ["cheap", "fast", "steady", "vectors"]


def test_a_route_is_the_model_then_its_active_fallbacks_in_position_order_that_serve_the_endpoint(models):
    built = catalog_build()
    fast = built.models["fast"]

    assert names(built.route(fast, "chat")) == ["fast", "steady", "cheap"]
    assert names(built.route(fast, "embeddings")) == ["fast", "steady", "vectors"]
    assert built.route(built.models["cheap"], "embeddings") == ()


def test_a_model_costs_its_prompt_and_completion_tokens_at_their_prices(models):
    LanguageModel.objects.filter(name="fast").update(input_price=Decimal("2.5"), output_price=Decimal("10"))
    built = catalog_build()

    # A million prompt tokens cost 2.5, a million completion tokens 10: in money units, exactly.
    assert built.models["fast"].cost(TokenCount(1_000_000, 0)) == money.units(Decimal("2.5"))
    assert built.models["fast"].cost(TokenCount(3, 7)) == 3 * 2_500_000 + 7 * 10_000_000
    assert built.models["steady"].cost(TokenCount(1_000, 1_000)) == 0  # unpriced: free


def read_catalog():
    return portal().call(catalog)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda rows, plan: LanguageModel.objects.create(name="new", base_url=""), id="model added"),
        pytest.param(lambda rows, plan: rows["cheap"].save(), id="model saved"),
        pytest.param(lambda rows, plan: rows["cheap"].delete(), id="model deleted"),
        pytest.param(lambda rows, plan: Fallback.objects.filter(to=rows["cheap"]).get().save(), id="fallback saved"),
        pytest.param(lambda rows, plan: plan.save(), id="plan saved"),
        pytest.param(lambda rows, plan: plan.models.add(rows["cheap"]), id="plan's models changed"),
    ],
)
def test_a_saved_row_makes_the_next_catalog_read_anew(transactional_db, models, make_plan, monkeypatch, change):
    monkeypatch.setattr(catalog_module, "SNAPSHOT_SECONDS", 3600.0)  # only a change can make it stale
    plan = make_plan("Listing")
    first = read_catalog()
    assert read_catalog() is first  # nothing changed: the snapshot is kept

    change(models, plan)

    assert read_catalog() is not first


def test_the_catalog_read_anew_has_the_change(transactional_db, models, make_plan, monkeypatch):
    monkeypatch.setattr(catalog_module, "SNAPSHOT_SECONDS", 3600.0)
    plan = make_plan("Listing")
    plan.models.set([models["fast"]])
    assert read_catalog().granted(plan.pk, "cheap") is None

    plan.models.add(models["cheap"])
    models["steady"].active = False
    models["steady"].save()

    anew = read_catalog()
    assert anew.granted(plan.pk, "cheap").name == "cheap"
    assert names(anew.route(anew.models["fast"], "chat")) == ["fast", "cheap"]
