from rest_framework import serializers

from activity.models import RequestLog

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
    "estimated",
    "ttfb_ms",
    "duration_ms",
    "request_id",
]


class RequestLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = RequestLog
        fields = FIELDS
        read_only_fields = FIELDS
