"""The one set of filter rules for the request log: the activity page, its CSV and `/api/requests`."""

from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from activity.models import LOGGED_OUTCOMES, RequestLog
from keys.models import ApiKey


def own_keys(request: HttpRequest):
    # Only the signed-in user's keys are valid choices: another user's key id is a field error.
    return ApiKey.objects.filter(owner=request.user).select_related("plan")


class InstantField(forms.DateTimeField):
    """A date-time that exists in UTC too, as the database compares in UTC: 9999-12-31T23:00-14:00
    does not, and would fail in the query instead of here."""

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Enter a date-time between the years 1 and 9999 in UTC.", code="invalid") from None


class InstantFilter(django_filters.DateTimeFilter):
    field_class = InstantField


class RequestLogFilter(django_filters.FilterSet):
    key = django_filters.ModelChoiceFilter(
        queryset=own_keys, empty_label="All keys", label="Key", help_text="Only requests made with this key."
    )
    model = django_filters.CharFilter(
        max_length=100,
        label="Model",
        help_text="Only requests for this model (its exact name).",
        # The page offers the models seen so far in a <datalist> of this id.
        widget=forms.TextInput(attrs={"placeholder": "All models", "list": "models-seen"}),
    )
    outcome = django_filters.ChoiceFilter(choices=LOGGED_OUTCOMES, empty_label="All outcomes")
    day = django_filters.DateFilter(
        field_name="at",
        lookup_expr="date",
        label="Day (UTC)",
        help_text="Only requests on this day (UTC).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    since = InstantFilter(
        field_name="at",
        lookup_expr="gte",
        label="Since",
        help_text="Only requests at or after this ISO 8601 date or date-time (UTC unless it names a zone).",
    )

    class Meta:
        model = RequestLog
        fields = ["key", "model", "outcome", "day", "since"]

    @property
    def is_narrowed(self) -> bool:
        return any(value not in (None, "") for value in self.form.cleaned_data.values())
