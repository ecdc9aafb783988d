from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from keys.backends import backend_check, backend_forget

        checks.register(backend_check)
        setting_changed.connect(backend_forget, dispatch_uid="keys.backend_forget")
