import os

from django.contrib import admin
from django.db import models

from keys.admin import in_currency
from keys.presenters import price_shown
from proxy.models import Fallback, LanguageModel


class FallbackInline(admin.TabularInline):
    model = Fallback
    fk_name = "model"
    fields = ["position", "to"]
    ordering = ["position"]
    extra = 0


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "base_url",
        "upstream_model",
        "api_key_env",
        "api_key_status",
        "max_output_tokens",
        "endpoints",
        "prices",
        "active",
    ]
    list_filter = ["active"]
    search_fields = ["name", "upstream_model", "base_url", "api_key_env"]
    fields = [
        *(field for field in list_display if field != "prices"),
        "input_price",
        "output_price",
        "context_window",
        "max_media_tokens",
        "extra_fields",
        "updated",
    ]
    readonly_fields = ["api_key_status", "updated"]
    inlines = [FallbackInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="prices per 1M tokens (prompt / completion)")
    def prices(self, obj: LanguageModel) -> str:
        if obj.input_price is None and obj.output_price is None:
            return "free"
        return f"{price_shown(obj.input_price)} / {price_shown(obj.output_price)}"

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        return in_currency(super().formfield_for_dbfield(db_field, request, **kwargs))

    @admin.display(description="API key")
    def api_key_status(self, obj: LanguageModel) -> str | None:
        # Whether this process can send the upstream a key; the value itself never reaches a page.
        if not obj.api_key_env:
            return None
        return "set" if os.environ.get(obj.api_key_env) else "not set"
