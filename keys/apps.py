from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed
from django.db.models.signals import pre_delete


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from keys.backends import backend_check, backend_forget
        from keys.models import ApiKey, lock_before_delete

        checks.register(backend_check)
        setting_changed.connect(backend_forget, dispatch_uid="keys.backend_forget")
        pre_delete.connect(lock_before_delete, sender=ApiKey, dispatch_uid="keys.lock_before_delete")
