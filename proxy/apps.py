from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Model API"

    def ready(self) -> None:
        from keys.models import Plan
        from proxy.catalog import snapshot
        from proxy.models import Fallback, LanguageModel

        # The rows the catalog is built from (proxy/catalog.py, catalog_build): a change to one, made
        # here (admin, load_config), is served at once, not after the snapshot's age runs out.
        for sender in (LanguageModel, Fallback, Plan):
            post_save.connect(snapshot.forget, sender=sender, dispatch_uid=f"catalog.saved.{sender.__name__}")
            post_delete.connect(snapshot.forget, sender=sender, dispatch_uid=f"catalog.deleted.{sender.__name__}")
        m2m_changed.connect(snapshot.forget, sender=Plan.models.through, dispatch_uid="catalog.grants")
