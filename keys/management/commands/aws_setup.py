"""Prepare an API Gateway stage for the aws backend: the seed usage plans on it, every method key-only."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keys.backends.aws_setup import SEED_PLANS, GatewaySetup
from keys.errors import BackendUnavailable


class Command(BaseCommand):
    help = (
        "Create the seed usage plans in API Gateway if missing, attach them to the stage, and make every "
        "method of the REST API require an API key. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rest-api-id", required=True, help="The REST API's id, e.g. a1b2c3d4e5.")
        parser.add_argument("--stage", required=True, help="The deployed stage the plans apply to, e.g. prod.")

    def handle(self, *args, rest_api_id: str, stage: str, **options) -> None:
        setup = GatewaySetup(rest_api_id=rest_api_id, stage=stage)
        try:
            for line in setup.run(SEED_PLANS):
                self.stdout.write(line)
        except BackendUnavailable as exc:
            raise CommandError(f"AWS refused the set-up of {rest_api_id}:{stage}: {exc}") from exc
