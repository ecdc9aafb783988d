import os

from django.contrib import admin
from django.db import models

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
        "active",
    ]
    list_filter = ["active"]
    search_fields = ["name", "upstream_model", "base_url", "api_key_env"]
    fields = [*list_display, "context_window", "max_media_tokens", "extra_fields", "updated"]
    readonly_fields = ["api_key_status", "updated"]
    inlines = [FallbackInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="API key")
    def api_key_status(self, obj: LanguageModel) -> str | None:
        # Whether this process can send the upstream a key; the value itself never reaches a page.
        if not obj.api_key_env:
            return None
        return "set" if os.environ.get(obj.api_key_env) else "not set"
