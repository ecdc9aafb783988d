from rest_framework import serializers

from activity.models import RequestLog
from keys.serializers import MoneyField

# The API's fields, and the CSV's columns in this order.
FIELDS = [
    "id",
    "key",
    "model",
    "endpoint",
    "at",
    "status",
    "outcome",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "estimated",
    "ttfb_ms",
    "duration_ms",
    "request_id",
]


class RequestLogSerializer(serializers.ModelSerializer):
    cost = MoneyField(help_text="What the request was charged (priced at an estimate where `estimated`).")

    class Meta:
        model = RequestLog
        fields = FIELDS
        read_only_fields = FIELDS
