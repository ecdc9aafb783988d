from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from keys import money, services
from keys.errors import BackendUnavailable
from keys.models import ApiKey, AuditEvent, AuthFailure, Plan, Usage
from portal.admin import ReadOnlyAdmin


def in_currency(formfield):
    """A money field's help names the currency it is in, not the setting that picks it."""
    if formfield is not None and formfield.help_text:
        formfield.help_text = formfield.help_text.replace("CURRENCY", settings.CURRENCY)
    return formfield


@admin.display(description="spent", ordering="spent")
def spent_shown(usage: Usage) -> str:
    return money.shown(usage.spent)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "quota",
        "period",
        "token_quota",
        "budget_shown",
        "max_output_tokens",
        "rate_limit",
        "burst_limit",
        "active",
        "aws_id",
    ]
    list_filter = ["period", "active", "models"]
    search_fields = ["name"]
    filter_horizontal = ["models"]

    @admin.display(description="money budget", ordering="budget")
    def budget_shown(self, plan: Plan) -> str | None:
        return None if plan.budget is None else money.shown(money.units(plan.budget))

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        return in_currency(super().formfield_for_dbfield(db_field, request, **kwargs))

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Where the backend keeps plans elsewhere (API Gateway), refresh the rows from it first.
        try:
            services.plan_sync(max_age=0)
        except BackendUnavailable as exc:
            self.message_user(request, f"Could not refresh the plans from the key backend: {exc}", messages.ERROR)
        return super().changelist_view(request, extra_context)


class UsageInline(admin.TabularInline):
    model = Usage
    extra = 0
    can_delete = False
    fields = readonly_fields = ["window_start", "requests", "tokens", spent_shown]
    max_num = 0


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "owner", "plan", "status", "created", "last_used"]
    list_filter = ["status", "plan", "created"]
    search_fields = ["prefix", "name", "owner__email", "backend_key_id"]
    readonly_fields = ["prefix", "digest", "backend_key_id", "created", "last_used", "revoked_at"]
    raw_id_fields = ["owner"]
    inlines = [UsageInline]
    actions = ["revoke"]

    @admin.action(description="Revoke selected keys (also in AWS)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        done = 0
        for key in queryset.active():
            try:
                services.api_key_revoke(key=key, actor=request.user)
                done += 1
            except BackendUnavailable as exc:
                self.message_user(request, f"{key}: {exc}", messages.ERROR)
        self.message_user(request, f"Revoked {done} key(s).", messages.SUCCESS)


@admin.register(Usage)
class UsageAdmin(ReadOnlyAdmin):
    list_display = ["key", "window_start", "requests", "tokens", spent_shown]
    fields = readonly_fields = list_display
    list_filter = ["window_start"]
    search_fields = ["key__prefix", "key__owner__email"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "actor", "key", "masked_key", "ip"]
    list_filter = ["action", "at"]
    search_fields = ["masked_key", "ip", "actor__email"]


@admin.register(AuthFailure)
class AuthFailureAdmin(ReadOnlyAdmin):
    """Failed key authentications, one row per client address and minute; sort by failures to
    see who is trying the most keys."""

    list_display = ["minute", "ip", "failures", "last_seen", "samples"]
    list_filter = ["minute"]
    search_fields = ["ip", "samples"]
    date_hierarchy = "minute"
