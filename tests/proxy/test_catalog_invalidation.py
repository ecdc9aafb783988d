"""The catalog's snapshot is forgotten as soon as a row it is built from changes in this process."""

from collections.abc import Callable

import pytest

from keys.models import Plan
from proxy.catalog import Catalog, snapshot
from proxy.models import Fallback, LanguageModel

pytestmark = pytest.mark.django_db


def model(name: str) -> LanguageModel:
    return LanguageModel.objects.create(name=name, base_url=f"https://{name}.example.com/v1")


def save_a_model() -> None:
    model("fast")


def change_a_model() -> None:
    LanguageModel.objects.get(name="kept").save()


def delete_a_model() -> None:
    LanguageModel.objects.get(name="kept").delete()


def add_a_fallback() -> None:
    Fallback.objects.create(model=LanguageModel.objects.get(name="kept"), to=LanguageModel.objects.get(name="spare"))


def change_a_plan() -> None:
    Plan.objects.create(name="Starter", quota=5)


def grant_a_model() -> None:
    Plan.objects.get(name="10RequestPerDay").models.add(LanguageModel.objects.get(name="kept"))


@pytest.mark.parametrize(
    "change", [save_a_model, change_a_model, delete_a_model, add_a_fallback, change_a_plan, grant_a_model]
)
def test_a_change_to_a_catalog_row_forgets_the_snapshot(seed_plans, change: Callable[[], None]):
    model("kept")
    model("spare")
    snapshot.catalog = Catalog(models={}, grants={}, default="demo")  # as the hot path left it

    change()

    assert snapshot.catalog is None
