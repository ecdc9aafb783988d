"""`tollgate.toml` applied: the model catalog and the plans as code, loaded by `manage.py load_config`.

The whole file is checked first (proxy/config_check.py), so a bad file changes nothing. A good one is
applied in one transaction, by name, and writes only what differs: loading it twice writes nothing.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from keys.models import Plan
from proxy.config_check import CheckedConfig, CheckedTable, ConfigError, config_check, links_check
from proxy.models import Fallback, LanguageModel


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deactivated} deactivated"
        )


@dataclass
class Summary:
    models: Tally = field(default_factory=Tally)
    plans: Tally = field(default_factory=Tally)


def config_load(*, path: Path, prune: bool = False) -> Summary:
    """Upsert the models and plans of the file at `path`; `prune` deactivates those it does not name."""
    checked = config_check(path=path)
    try:
        with transaction.atomic():
            links_check(checked)
            return _apply(checked, prune=prune)
    except IntegrityError as exc:
        # Only a race gets here: someone made a row of the same name meanwhile. All of it was rolled back.
        raise ConfigError(f"the database refused it, as the rows changed meanwhile ({exc}); load it again") from exc


def _apply(checked: CheckedConfig, *, prune: bool) -> Summary:
    model_entries, plan_entries = checked.models, checked.plans
    summary = Summary()
    rows = [(_upsert(LanguageModel, entry), entry) for entry in model_entries]
    ids = dict(LanguageModel.objects.values_list("name", "id"))
    # Fallbacks only once every model has its row, as they may point forward in the file.
    for (row, outcome), entry in rows:
        if _set_fallbacks(row, [ids[to] for to in entry.links]) and outcome == "unchanged":
            row.save(update_fields=["updated"])  # `updated` says when the model's settings last changed
            outcome = "updated"
        summary.models.add(outcome)
    for entry in plan_entries:
        row, outcome = _upsert(Plan, entry)
        if _set_grants(row, {ids[granted] for granted in entry.links}) and outcome == "unchanged":
            outcome = "updated"
        summary.plans.add(outcome)
    if prune:
        named_models = [entry.name for entry in model_entries]
        summary.models.deactivated = (
            LanguageModel.objects.filter(active=True)
            .exclude(name__in=named_models)
            .update(active=False, updated=timezone.now())
        )
        named_plans = [entry.name for entry in plan_entries]
        summary.plans.deactivated = Plan.objects.filter(active=True).exclude(name__in=named_plans).update(active=False)
    return summary


def _upsert(db_model: type[models.Model], entry: CheckedTable) -> tuple[Any, str]:
    row = db_model.objects.select_for_update().filter(name=entry.name).first()
    if row is None:
        return db_model.objects.create(**entry.values), "created"
    changed = {attr: value for attr, value in entry.values.items() if getattr(row, attr) != value}
    if not changed:
        return row, "unchanged"
    for attr, value in changed.items():
        setattr(row, attr, value)
    row.save()
    return row, "updated"


def _set_fallbacks(row: LanguageModel, wanted: list[int]) -> bool:
    if list(row.fallback_links.order_by("position").values_list("to_id", flat=True)) == wanted:
        return False
    row.fallback_links.all().delete()
    Fallback.objects.bulk_create(Fallback(model=row, to_id=to, position=i) for i, to in enumerate(wanted))
    return True


def _set_grants(row: Plan, wanted: set[int]) -> bool:
    if set(row.models.values_list("id", flat=True)) == wanted:
        return False
    row.models.set(wanted)
    return True
