"""The seed-plans migration holds its own data, so that later code cannot change what it did."""

import ast
import importlib
from pathlib import Path

import pytest
from django.apps import apps

from keys.backends.aws_setup import SEED_PLANS
from keys.models import Plan

seed_migration = importlib.import_module("keys.migrations.0002_seed_plans")


def test_the_seed_plans_migration_imports_nothing_but_django():
    tree = ast.parse(Path(seed_migration.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported == {"django.db"}


@pytest.mark.django_db
def test_it_makes_the_three_seed_plans():
    Plan.objects.all().delete()

    seed_migration.create_seed_plans(apps, schema_editor=None)

    assert list(Plan.objects.values_list("name", "quota", "period")) == [
        ("10RequestPerDay", 10, "DAY"),
        ("20RequestPerDay", 20, "DAY"),
        ("30RequestPerDay", 30, "DAY"),
    ]


def test_aws_setup_seeds_api_gateway_with_the_plans_the_migration_made():
    # Change both together, the migration's by a new migration: an old one must not change.
    assert SEED_PLANS == seed_migration.SEED_PLANS
