"""`tollgate.toml` checked: read, and every [[model]] and [[plan]] table held to its schema, so that a bad
file is refused as a whole, with a message naming the entry and the field, before anything is written.
Writing what a good file says is proxy/config_apply.py.
"""

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from keys import money
from keys.backends import get_backend
from keys.models import Plan
from proxy.models import DEFAULT_ENDPOINTS, DEFAULT_MAX_MEDIA_TOKENS, Fallback, LanguageModel


class ConfigError(Exception):
    """The file cannot be loaded; the message names the entry and the field."""


# Checks: each returns the file's value, or raises ValueError saying what it should have been.


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _must_be(expected: str, value: Any) -> ValueError:
    return ValueError(f"must be {expected}, not {_shown(value)}")


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise _must_be("a string", value)
    return value


def nonblank(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _must_be("a non-empty string", value)
    return value


def http_url(value: Any) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise _must_be("an http:// or https:// URL", value)
    return value


def count(value: Any) -> int:
    # In Python a bool is an int, but `rate = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _must_be("a whole number", value)
    if value < 1:
        raise _must_be("at least 1", value)
    return value


def price(value: Any) -> Decimal:
    """Money, as a decimal string ("0.15") or a number, with at most 6 decimals, never below zero."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _must_be('a decimal string such as "0.15"', value)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise _must_be('a decimal string such as "0.15"', value) from None
    if not amount.is_finite() or amount < 0:
        raise _must_be("zero or more", value)
    if -amount.as_tuple().exponent > money.DECIMALS:
        raise _must_be(f"at most {money.DECIMALS} decimals", value)
    return amount


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _must_be("true or false", value)
    return value


def period(value: Any) -> str:
    if value not in Plan.Period.values:
        raise _must_be("DAY, WEEK or MONTH", value)
    return value


def names(what: str) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise _must_be(f"a list of {what}", value)
        for item in value:
            if value.count(item) > 1:
                raise ValueError(f'names "{item}" twice')
        return value

    return check


model_names = names("model names")


REQUIRED = object()


class Field(NamedTuple):
    attr: str  # the model's field
    check: Callable[[Any], Any]
    default: Any  # when the file leaves the key out; REQUIRED makes that an error


class Schema(NamedTuple):
    table: str  # as in [[model]]
    db_model: type[models.Model]
    fields: dict[str, Field]
    links: str  # the key naming other models, set once every model has its row


MODEL = Schema(
    "model",
    LanguageModel,
    {
        "name": Field("name", nonblank, REQUIRED),
        "base_url": Field("base_url", http_url, REQUIRED),
        "upstream_model": Field("upstream_model", text, ""),
        "api_key_env": Field("api_key_env", text, ""),
        "max_output_tokens": Field("max_output_tokens", count, None),
        "endpoints": Field("endpoints", names("endpoints"), DEFAULT_ENDPOINTS),
        "context_window": Field("context_window", count, None),
        "max_media_tokens": Field("max_media_tokens", count, DEFAULT_MAX_MEDIA_TOKENS),
        "extra_fields": Field("extra_fields", names("field names"), []),
        "input_price": Field("input_price", price, None),
        "output_price": Field("output_price", price, None),
        "active": Field("active", flag, True),
        "fallbacks": Field("fallbacks", model_names, []),
    },
    links="fallbacks",
)

PLAN = Schema(
    "plan",
    Plan,
    {
        "name": Field("name", nonblank, REQUIRED),
        "requests": Field("quota", count, REQUIRED),
        "period": Field("period", period, REQUIRED),
        "rate": Field("rate_limit", count, None),
        "burst": Field("burst_limit", count, None),
        "description": Field("description", text, ""),
        "active": Field("active", flag, True),
        "tokens": Field("token_quota", count, None),
        "budget": Field("budget", price, None),
        "max_output_tokens": Field("max_output_tokens", count, None),
        "models": Field("models", model_names, []),
    },
    links="models",
)


@dataclass
class CheckedTable:
    """One [[model]] or [[plan]] table, checked: its field values, and the model names it links to."""

    name: str
    values: dict[str, Any]
    links: list[str]  # a model's fallbacks, in order; the models a plan grants


@dataclass(frozen=True)
class CheckedConfig:
    """A file whose every table passed its checks; its links to other models are checked by `links_check`."""

    models: list[CheckedTable]
    plans: list[CheckedTable]


def config_check(*, path: Path) -> CheckedConfig:
    """The file at `path`, read and checked table by table. Raises ConfigError naming the first problem."""
    document = config_read(path=path)
    checked = CheckedConfig(models=_entries(document, MODEL), plans=_entries(document, PLAN))
    if not get_backend().serves_model_api:  # API Gateway counts requests; nothing would keep a budget
        for entry in checked.plans:
            if entry.values["budget"] is not None:
                raise ConfigError(f'plan "{entry.name}": budget: the aws backend counts requests only, not money')
    return checked


def config_read(*, path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML: {exc}") from exc
    for key in document:
        if key not in ("model", "plan"):
            raise ConfigError(f'unknown top-level key "{key}": the file holds [[model]] and [[plan]] tables')
    return document


def _entries(document: dict, schema: Schema) -> list[CheckedTable]:
    tables = document.get(schema.table, [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{schema.table} must be a list of tables: write each one under [[{schema.table}]]")
    entries: dict[str, CheckedTable] = {}
    for number, table in enumerate(tables, 1):
        entry = _entry(schema, number, table)
        if entry.name in entries:
            raise ConfigError(f'{schema.table} "{entry.name}": the name is used by two [[{schema.table}]] entries')
        entries[entry.name] = entry
    return list(entries.values())


def _entry(schema: Schema, number: int, table: dict) -> CheckedTable:
    given = table.get("name")
    label = f'{schema.table} "{given}"' if isinstance(given, str) and given.strip() else f"{schema.table} #{number}"
    for key in table:
        if key not in schema.fields:
            raise ConfigError(f'{label}: unknown field "{key}"')
    values = {}
    for key, (attr, check, default) in schema.fields.items():
        if key not in table:
            if default is REQUIRED:
                raise ConfigError(f'{label}: missing field "{key}"')
            values[attr] = default
            continue
        try:
            values[attr] = check(table[key])
        except ValueError as exc:
            raise ConfigError(f"{label}: {key} {exc}") from None
    links = values.pop(schema.fields[schema.links].attr)
    # The model's own validators have the last word (URL syntax, variable names, lengths, ranges).
    row = schema.db_model(**values)
    try:
        row.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise ConfigError(f"{label}: {_first_problem(exc, schema, table)}") from None
    return CheckedTable(values["name"], {attr: getattr(row, attr) for attr in values}, links)


def _first_problem(error: ValidationError, schema: Schema, table: dict) -> str:
    attr, messages = next(iter(error.message_dict.items()))
    key = next((key for key, spec in schema.fields.items() if spec.attr == attr), None)
    if key is None:
        return messages[0]
    return f"{key} {_shown(table.get(key))} is refused: {messages[0]}"


def links_check(checked: CheckedConfig) -> None:
    """The fallbacks and grants name models that exist (in the file or the database) and make no cycle.
    Call it in the transaction that writes, so that the rows it reads cannot go stale."""
    model_entries, plan_entries = checked.models, checked.plans
    known = {entry.name for entry in model_entries} | set(LanguageModel.objects.values_list("name", flat=True))
    for entry in model_entries:
        for to in entry.links:
            if to == entry.name:
                raise ConfigError(f'model "{entry.name}": fallbacks: a model cannot fall back to itself')
            if to not in known:
                raise ConfigError(f'model "{entry.name}": fallbacks: no model is named "{to}"')
    # The fallbacks as they will be: the file's for the models it names, the database's for the others.
    graph: dict[str, list[str]] = {}
    for source, to in Fallback.objects.values_list("model__name", "to__name"):
        graph.setdefault(source, []).append(to)
    graph.update({entry.name: entry.links for entry in model_entries})
    for entry in model_entries:
        if cycle := _cycle_through(entry.name, graph):
            raise ConfigError(f'model "{entry.name}": fallbacks make a cycle: {" → ".join(cycle)}')
    for entry in plan_entries:
        for granted in entry.links:
            if granted not in known:
                raise ConfigError(f'plan "{entry.name}": models: no model is named "{granted}"')


def _cycle_through(start: str, graph: dict[str, list[str]]) -> list[str] | None:
    """A path of fallbacks from `start` back to itself, if there is one."""
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop()
        for to in graph.get(path[-1], []):
            if to == start:
                return [*path, start]
            if to not in seen:
                seen.add(to)
                paths.append([*path, to])
    return None
