from django.contrib.auth.decorators import login_not_required
from django.urls import path

from keys import api, views


def drf(view_class):
    # DRF answers anonymous calls itself with a JSON 401/403, instead of the sign-in redirect.
    return login_not_required(view_class.as_view())


api_urlpatterns = [
    path("plan", drf(api.PlanListApi), name="api-plans"),
    path("create_key", drf(api.KeyCreateApi), name="api-create-key"),
    path("keys/", drf(api.KeyListApi), name="api-keys"),
    path("keys/<int:key_id>/", drf(api.KeyDetailApi), name="api-key"),
    path("keys/<int:key_id>/rotate", drf(api.KeyRotateApi), name="api-key-rotate"),
    path("keys/<int:key_id>/usage", drf(api.KeyUsageApi), name="api-key-usage"),
]

page_urlpatterns = [
    path("", views.keys_page, name="keys"),
    path("<int:key_id>/rotate", views.key_rotate, name="key-rotate"),
    path("<int:key_id>/revoke", views.key_revoke, name="key-revoke"),
    path("alerts", views.usage_alerts, name="usage-alerts"),
]
