"""Upsert the model catalog and the plans from a tollgate.toml file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from proxy.config_apply import config_load
from proxy.config_check import ConfigError


class Command(BaseCommand):
    help = (
        "Create or update the models and plans of a tollgate.toml file, by name. Safe to run again; "
        "a bad file is refused as a whole and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="The TOML file, e.g. tollgate.toml.")
        parser.add_argument(
            "--prune", action="store_true", help="Also deactivate the models and plans that the file does not name."
        )

    def handle(self, *args, path: Path, prune: bool, **options) -> None:
        try:
            summary = config_load(path=path, prune=prune)
        except ConfigError as exc:
            raise CommandError(f"{path}: {exc} (nothing was changed)") from exc
        self.stdout.write(f"models: {summary.models}")
        self.stdout.write(f"plans: {summary.plans}")
