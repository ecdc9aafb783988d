"""Keys, plans and usage in the Django database; Tollgate itself enforces the quota."""

from datetime import date

from django.contrib.auth.models import AbstractBaseUser

from keys import tokens
from keys.backends import Counted, IssuedSecret
from keys.models import ApiKey, Plan, Usage


class LocalBackend:
    name = "local"
    serves_model_api = True

    def sync_plans(self) -> None:
        pass  # the rows are the plans

    def list_plans(self) -> list[Plan]:
        return list(Plan.objects.filter(active=True))

    def issue(self, *, user: AbstractBaseUser, plan: Plan) -> IssuedSecret:
        secret = tokens.generate_secret()
        return IssuedSecret(value=secret, prefix=tokens.display_prefix(secret), digest=tokens.digest(secret))

    def reissue(self, *, key: ApiKey) -> IssuedSecret:
        # The old secret stops working when the row's digest changes.
        return self.issue(user=key.owner, plan=key.plan)

    def withdraw(self, issued: IssuedSecret) -> None:
        pass  # nothing exists outside the database row

    def revoke(self, *, key: ApiKey) -> None:
        pass  # the row's status is the revocation

    def daily_usage(self, *, key: ApiKey, start: date, end: date) -> dict[date, Counted]:
        # One row per quota window, on the window's first day.
        rows = Usage.objects.filter(key=key, window_start__range=(start, end))
        return {
            day: Counted(requests, tokens)
            for day, requests, tokens in rows.values_list("window_start", "requests", "tokens")
        }

    def window_usage(self, *, key: ApiKey, start: date, today: date) -> Counted:
        # The row that admission counts against, exactly.
        row = Usage.objects.filter(key=key, window_start=start).values_list("requests", "tokens", "spent").first()
        return Counted(*row) if row else Counted()

    def gateway_key(self, *, key: ApiKey) -> None:
        return None  # Tollgate admits local keys itself; only their digest is kept
