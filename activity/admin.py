from django.contrib import admin

from activity.models import AlertOptOut, RequestLog, UsageAlert
from keys import money
from portal.admin import ReadOnlyAdmin


class ModelFilter(admin.AllValuesFieldListFilter):
    """Filter by model, where requests refused before a model was chosen (a blank model) have a
    name: Django's own filter shows the blank as an empty link."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            yield {**choice, "display": choice["display"] or "(none)"}


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = [
        "at",
        "key__prefix",
        "key__owner__email",
        "model",
        "endpoint",
        "status",
        "outcome",
        "prompt_tokens",
        "completion_tokens",
        "cost_shown",
        "estimated",
        "ttfb_ms",
        "duration_ms",
        "request_id",
        "client_ip",
    ]
    # The detail page: the list's columns, the key itself instead of its prefix and owner, and the
    # cost as money too, not as a count of pico-units.
    fields = ["key", "at", *list_display[3:]]
    readonly_fields = ["cost_shown"]
    list_filter = ["outcome", ("model", ModelFilter), "endpoint", "estimated"]
    list_select_related = ["key__owner"]
    search_fields = ["request_id__exact", "^key__prefix", "key__owner__email", "model", "=client_ip"]
    date_hierarchy = "at"
    # The log is the biggest table: skip counting all of it on every page.
    show_full_result_count = False

    @admin.display(description="cost", ordering="cost")
    def cost_shown(self, row: RequestLog) -> str:
        return money.shown(row.cost)


@admin.register(UsageAlert)
class UsageAlertAdmin(ReadOnlyAdmin):
    list_display = ["at", "key__prefix", "key__owner__email", "window_start", "measure", "threshold", "sent_at"]
    list_filter = ["measure", "threshold", "window_start"]
    list_select_related = ["key__owner"]
    search_fields = ["^key__prefix", "key__owner__email"]
    date_hierarchy = "at"


@admin.register(AlertOptOut)
class AlertOptOutAdmin(admin.ModelAdmin):
    list_display = ["user__email", "at"]
    list_select_related = ["user"]
    search_fields = ["user__email"]
    raw_id_fields = ["user"]
