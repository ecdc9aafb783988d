from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from keys import services
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed


class Command(BaseCommand):
    help = "Create an API key for an existing user on a plan; prints only the secret."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="The user's email.")
        parser.add_argument("--plan", required=True, help="The plan's name, e.g. 10RequestPerDay.")

    def handle(self, *args, user: str, plan: str, **options) -> None:
        owner = get_user_model().objects.filter(email__iexact=user).first()
        if owner is None:
            raise CommandError(f"No user with the email {user!r}.")
        try:
            services.plan_sync(max_age=0)
        except BackendUnavailable as exc:
            raise CommandError(f"Could not read the plans: {exc}") from exc
        plans = {p.name: p for p in services.plan_list()}
        if plan not in plans:
            raise CommandError(f"No plan named {plan!r}. Plans: {', '.join(plans) or 'none'}.")
        try:
            _key, secret = services.api_key_create(user=owner, plan=plans[plan])
        except KeyAlreadyExists:
            raise CommandError(f"{user} already has an active key on {plan}.") from None
        except (KeyCreateFailed, BackendUnavailable) as exc:
            raise CommandError(f"The key could not be created: {exc}") from exc
        self.stdout.write(secret)
