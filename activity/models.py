"""What each model API request did (the request log), and the usage alerts sent about keys."""

from django.conf import settings
from django.db import models

from keys import money
from keys.models import ApiKey
from proxy.models import ENDPOINTS


class RequestLog(models.Model):
    """One model API request that reached a key. Never the prompt or the answer.

    `Outcome` is the one vocabulary of how a request ended, in this log, in the log lines and in
    the metrics; admission's decisions (proxy/admission.py) map onto it."""

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        LIMITED = "limited", "Limit exceeded"
        THROTTLED = "throttled", "Throttled"
        UPSTREAM_ERROR = "upstream_error", "Upstream error"
        CLIENT_GONE = "client_gone", "Client left"
        INVALID = "invalid", "Invalid"
        # Only in metrics and log lines, for requests that never reached a key (and so have no row):
        FORBIDDEN = "forbidden", "Forbidden"
        UNAVAILABLE = "unavailable", "Quota store unavailable"
        ERROR = "error", "Error"

    # Indexed by request_log_key_at, which leads with the key: every logged request writes each index.
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="requests", db_index=False)
    model = models.CharField(max_length=100, blank=True)
    endpoint = models.CharField(
        max_length=16,
        blank=True,
        choices=[(e, e) for e in ENDPOINTS],
        help_text="/query and the chat page: chat.",
    )
    at = models.DateTimeField(db_index=True)
    status = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.PositiveBigIntegerField(default=0, help_text="Money charged, in pico-units (keys/money.py).")
    estimated = models.BooleanField(default=False, help_text="No usage report came: the tokens are an estimate.")
    ttfb_ms = models.PositiveIntegerField("time to first byte (ms)", null=True, blank=True)
    duration_ms = models.PositiveIntegerField("duration (ms)", default=0)
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(
        "client address", null=True, blank=True, help_text="Behind a proxy (DJANGO_BEHIND_PROXY), from X-Forwarded-For."
    )

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "request"
        indexes = [
            models.Index(fields=["key", "-at"], name="request_log_key_at"),
            # A request id is looked up by its exact value (from a log line or an error's answer): no
            # pattern index beside it on PostgreSQL.
            models.Index(fields=["request_id"], name="request_log_request_id"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.model} {self.status}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_amount(self):
        return money.amount(self.cost)


# What a row can say: the outcomes of requests that reached a key.
LOGGED_OUTCOMES = [
    (value, label)
    for value, label in RequestLog.Outcome.choices
    if value not in (RequestLog.Outcome.FORBIDDEN, RequestLog.Outcome.UNAVAILABLE, RequestLog.Outcome.ERROR)
]


class UsageAlert(models.Model):
    """An alert about a key's window crossing a threshold. The unique constraint is the referee:
    of all the workers that see the same crossing, only the one whose row goes in sends."""

    class Measure(models.TextChoices):
        REQUESTS = "requests", "requests"
        TOKENS = "tokens", "tokens"
        BUDGET = "budget", "money budget"

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="alerts")
    window_start = models.DateField()
    measure = models.CharField(max_length=8, choices=Measure.choices)
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the quota or budget.")
    at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Empty: not sent (turned off, or mail failed).")

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key", "window_start", "measure", "threshold"], name="one_alert_per_key_window_threshold"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.window_start} {self.measure} {self.threshold}%"


class AlertOptOut(models.Model):
    """A user who turned usage alerts off (on `/keys/`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "usage alert opt-out"

    def __str__(self) -> str:
        return f"{self.user} (alerts off)"
