from django.contrib.auth import get_user_model
from rest_framework import serializers

from keys.models import ApiKey, Plan


class PlanSerializer(serializers.ModelSerializer):
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


class UsageQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30)


class DayUsageSerializer(serializers.Serializer):
    day = serializers.DateField()
    requests = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="Tokens charged; 0 where the backend does not count them (aws).")


def user_by_email(email: str):
    return get_user_model().objects.filter(email__iexact=email).first()
