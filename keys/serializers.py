from decimal import Decimal

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from keys import money
from keys.models import ApiKey, Plan

MONEY_SCHEMA = {
    "type": "string",
    "format": "decimal",
    "pattern": r"^\d+\.\d{2,12}$",
    "example": "0.0042",
    "description": "Money, as an exact decimal string of the deployment's currency (`currency` in the key list).",
}


@extend_schema_field(MONEY_SCHEMA)
class MoneyField(serializers.Field):
    """Money as the JSON API gives it: an exact decimal string ("0.0042", "5.00"), never a float.
    Reads pico-units (keys/money.py), or with `amount=True` a decimal of the currency (a plan's budget)."""

    def __init__(self, *, amount: bool = False, **kwargs) -> None:
        self.amount = amount
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: int | Decimal) -> str:
        return money.decimal_string(money.units(value) if self.amount else value)


class PlanSerializer(serializers.ModelSerializer):
    budget = MoneyField(amount=True, allow_null=True, help_text="Money allowed per period; null: no money budget.")

    class Meta:
        model = Plan
        fields = [
            "name",
            "quota",
            "period",
            "rate_limit",
            "burst_limit",
            "token_quota",
            "max_output_tokens",
            "budget",
            "description",
        ]


class KeyCreateInputSerializer(serializers.Serializer):
    plan_name = serializers.CharField(max_length=64)
    user = serializers.EmailField(required=False, help_text="Defaults to the signed-in user; others need staff.")

    def __init__(self, *args, plans: list[Plan] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plans = {plan.name: plan for plan in plans or []}

    def validate_plan_name(self, value: str) -> Plan:
        if value not in self.plans:
            raise serializers.ValidationError(f"Unknown plan {value!r}. Choose one of: {', '.join(self.plans)}.")
        return self.plans[value]


class SecretSerializer(serializers.Serializer):
    value = serializers.CharField(help_text="The secret. Shown once; Tollgate does not keep it.")


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()


class DetailSerializer(serializers.Serializer):
    """DRF's own refusals (not found, permission denied), as the schema documents them."""

    detail = serializers.CharField()


# A 400 of DRF's: each field's errors under its name, as the serializer gave them.
FIELD_ERRORS = OpenApiResponse(OpenApiTypes.OBJECT, description="The errors of each field, by its name")


class KeySerializer(serializers.Serializer):
    """A key with its usage (`keys.presenters.KeyRow`); never the secret."""

    id = serializers.IntegerField(source="key.id")
    name = serializers.CharField(source="key.name")
    prefix = serializers.CharField(source="key.prefix")
    plan = serializers.CharField(source="key.plan.name")
    status = serializers.ChoiceField(source="key.status", choices=ApiKey.Status.choices)
    created = serializers.DateTimeField(source="key.created")
    last_used = serializers.DateTimeField(source="key.last_used", allow_null=True)
    # null when the backend cannot say (API Gateway's usage is briefly unavailable).
    used_today = serializers.IntegerField(source="window.requests.used", allow_null=True)
    remaining_today = serializers.IntegerField(source="window.requests.remaining", allow_null=True)
    resets_at = serializers.DateTimeField(source="window.resets_at", allow_null=True)
    # The token budget's side of the same window; token_quota is also null for a plan without a budget.
    used_tokens = serializers.IntegerField(source="window.tokens.used", allow_null=True)
    remaining_tokens = serializers.IntegerField(source="window.tokens.remaining", allow_null=True)
    token_quota = serializers.IntegerField(source="window.tokens.limit", allow_null=True)
    # And its money: what this window has been charged (in-flight requests at their reservation), and
    # the plan's money budget (null without one). API Gateway counts no money: there spent stays 0.
    spent = MoneyField(
        source="window.money.used",
        allow_null=True,
        help_text="Money charged this window (requests in flight at their reservation); 0 where the backend "
        "counts no money (aws); null when the backend cannot say.",
    )
    budget = MoneyField(source="window.money.limit", allow_null=True, help_text="The plan's money budget; null: none.")
    currency = serializers.CharField(read_only=True, help_text="ISO 4217 code of spent and budget.")


class UsageQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30)


class DayUsageSerializer(serializers.Serializer):
    day = serializers.DateField()
    requests = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="Tokens charged; 0 where the backend does not count them (aws).")


def user_by_email(email: str):
    return get_user_model().objects.filter(email__iexact=email).first()
