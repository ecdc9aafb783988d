import calendar
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import ManyToManyField, Q

from keys import money

# The largest numbers a plan may hold, so that nothing the hot path adds up can overflow a 64-bit
# counter: a window's tokens stay below MAX_QUOTA requests x (1 MB of prompt + 8 answers of
# MAX_OUTPUT_TOKENS), about 1.8e18.
MAX_QUOTA = 100_000_000
MAX_TOKEN_BUDGET = 10**15
MAX_OUTPUT_TOKENS = 2**31 - 1  # also the largest answer bound a request may ask for (a 32-bit integer)
MAX_RATE = 1_000_000


def bounded(high: int) -> list:
    return [MinValueValidator(1), MaxValueValidator(high)]


def optional_limit(field: type[models.Field], high: int, help_text: str, *verbose_name: str) -> models.Field:
    """A limit that may be left empty (none), else a whole number from 1 to `high`."""
    return field(*verbose_name, null=True, blank=True, validators=bounded(high), help_text=help_text)


class Plan(models.Model):
    """A usage plan: `quota` requests per calendar `period` (UTC), like an API Gateway usage plan."""

    class Period(models.TextChoices):
        DAY = "DAY", "per day"
        WEEK = "WEEK", "per week"
        MONTH = "MONTH", "per month"

    name = models.CharField(max_length=64, unique=True)
    quota = models.PositiveIntegerField(validators=bounded(MAX_QUOTA), help_text="Requests allowed in each period.")
    period = models.CharField(max_length=5, choices=Period.choices, default=Period.DAY)
    rate_limit = optional_limit(models.PositiveIntegerField, MAX_RATE, "Optional throttle: steady requests per second.")
    burst_limit = optional_limit(
        models.PositiveIntegerField, MAX_RATE, "Optional throttle: requests allowed in one second at most."
    )
    token_quota = optional_limit(
        models.PositiveBigIntegerField,
        MAX_TOKEN_BUDGET,
        "Optional: tokens (prompt and answer) allowed in each period (local backend).",
        "token budget",
    )
    max_output_tokens = optional_limit(
        models.PositiveIntegerField,
        MAX_OUTPUT_TOKENS,
        "Optional cap on each request's answer, in tokens (local backend).",
    )
    budget = models.DecimalField(
        "money budget",
        max_digits=7 + money.DECIMALS,
        decimal_places=money.DECIMALS,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(money.MAX_BUDGET)],
        help_text="Optional: money allowed in each period, in CURRENCY, at the models' prices (local backend).",
    )
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True, help_text="Inactive plans are not offered for new keys.")
    aws_id = models.CharField(
        "AWS usage plan id", max_length=64, blank=True, help_text="Set for plans read from API Gateway."
    )
    # Last, as it shadows the `models` module in this class body.
    models = ManyToManyField(
        "proxy.LanguageModel",
        blank=True,
        related_name="plans",
        help_text="The models this plan may use (local backend). None chosen: every active model.",
    )

    class Meta:
        ordering = ["quota", "name"]

    def __str__(self) -> str:
        return self.name

    def window(self, now: datetime) -> tuple[date, datetime]:
        return quota_window(self.period, now)

    @property
    def throttle_rate(self) -> str | None:
        return throttle_rate(self.rate_limit, self.burst_limit)


def quota_window(period: str, now: datetime) -> tuple[date, datetime]:
    """The UTC calendar window of `period` holding `now`: (first day, the instant it ends)."""
    today = now.astimezone(UTC).date()
    if period == Plan.Period.WEEK:
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    elif period == Plan.Period.MONTH:
        start = today.replace(day=1)
        end = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    else:
        start = today
        end = start + timedelta(days=1)
    return start, datetime.combine(end, time.min, tzinfo=UTC)


def throttle_rate(rate_limit: int | None, burst_limit: int | None) -> str | None:
    """A plan's per-second throttle in django-ratelimit syntax, or None when it has none."""
    allowed = max(rate_limit or 0, burst_limit or 0)
    return f"{allowed}/s" if allowed else None


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> "ApiKeyQuerySet":
        """Keys not revoked, expired or not: what the one-active-key constraint counts. `ApiKey.is_usable`
        adds the expiry."""
        return self.filter(status=ApiKey.Status.ACTIVE)

    def usable(self, now: datetime) -> "ApiKeyQuerySet":
        """The keys that authenticate at `now`: `ApiKey.is_usable` as a filter."""
        return self.active().filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="keys")
    name = models.CharField(max_length=150)
    prefix = models.CharField(max_length=16, help_text="The first characters of the secret, for display.")
    digest = models.CharField(
        max_length=64, unique=True, null=True, blank=True, help_text="SHA-256 of the secret (local backend)."
    )
    backend_key_id = models.CharField(
        max_length=128, blank=True, help_text="API Gateway key id (aws backend). The value is never stored."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"
        constraints = [
            # One active key per user per plan; the database settles racing creates.
            models.UniqueConstraint(
                fields=["owner", "plan"], condition=Q(status="active"), name="one_active_key_per_user_and_plan"
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.plan})"

    def is_usable(self, now: datetime) -> bool:
        """Whether the key authenticates at `now`: active, and its expiry (if any) still ahead. The same rule
        as `usable_key_sql`, which admission's statement uses; tests/keys/test_usable_key.py holds them together."""
        return self.status == self.Status.ACTIVE and (self.expires_at is None or self.expires_at > now)


def lock_before_delete(sender, instance: ApiKey, using: str, **kwargs) -> None:
    """A key's own row is locked before anything of it is deleted (its usage rows and request log
    first, then the key, as Django deletes them): in the order the ledger locks them (proxy/ledger.py:
    the key, then its usage rows), so that a delete, in admin or with its owner's account, and a batch
    settling the key wait for each other instead of deadlocking. Connected as `pre_delete`, which
    Django sends inside the delete's transaction, before its first DELETE (keys/apps.py)."""
    ApiKey.objects.using(using).select_for_update().filter(pk=instance.pk).exists()


def usable_key_sql(alias: str) -> str:
    """`ApiKey.is_usable` as a SQL condition on the keys table aliased `alias`, against the `%(now)s`
    parameter: for the model API's hand-written key lookup (proxy/admission.py)."""
    active = ApiKey.Status.ACTIVE.value
    return f"{alias}.status = '{active}' AND ({alias}.expires_at IS NULL OR {alias}.expires_at > %(now)s)"


class Usage(models.Model):
    """Requests admitted and tokens charged for one key in one quota window (its first day, UTC).

    `tokens` and `spent` (money) hold each settled request at what the upstream reported and each
    request still in flight at its reservation (see proxy/budget.py), so they never understate
    what was spent.
    """

    # Indexed by one_usage_row_per_window, which leads with the key.
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage", db_index=False)
    window_start = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    spent = models.PositiveBigIntegerField(default=0, help_text="Money charged, in pico-units (keys/money.py).")

    class Meta:
        ordering = ["-window_start"]
        verbose_name_plural = "usage"
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="one_usage_row_per_window"),
            # The referee of the reservation arithmetic: a bug that would drive a counter below zero
            # fails its own statement instead of writing a negative count.
            models.CheckConstraint(
                condition=Q(requests__gte=0) & Q(tokens__gte=0) & Q(spent__gte=0), name="usage_never_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.window_start}: {self.requests}"


class AuditEvent(models.Model):
    """Who did what to which key, for admins. Failed key authentications are `AuthFailure` rows."""

    class Action(models.TextChoices):
        KEY_CREATED = "key_created", "Key created"
        KEY_ROTATED = "key_rotated", "Key rotated"
        KEY_REVOKED = "key_revoked", "Key revoked"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    masked_key = models.CharField(max_length=32, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.get_action_display()}"


class AuthFailure(models.Model):
    """Failed key authentications from one client address in one minute: how many, when the
    last came, and a few of the keys tried (masked). One row per address and minute, however many
    keys a flood tries: an attacker can mint endless well-formed keys, so a row per key would be
    no bound. Written in batches by the model API (proxy/ledger.py)."""

    ip = models.CharField(
        "client address", max_length=45, blank=True, help_text="Empty: more addresses in one minute than are tracked."
    )
    minute = models.DateTimeField(db_index=True)
    failures = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()
    samples = models.CharField(max_length=200, blank=True, help_text="A few of the keys tried, masked.")

    class Meta:
        ordering = ["-minute", "-failures"]
        verbose_name = "failed key authentication"
        constraints = [models.UniqueConstraint(fields=["ip", "minute"], name="one_auth_failure_row_per_address_minute")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.ip or 'other addresses'}: {self.failures}"
