from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from activity import urls as activity_urls
from keys.urls import api_urlpatterns, page_urlpatterns
from portal import views

# Staff sign in to the admin through allauth, so its password-only form cannot skip the second factor.
admin.site.login = secure_admin_login(admin.site.login)

handler404 = views.not_found

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path("api/", include(api_urlpatterns)),
    path("api/", include(activity_urls.api_urlpatterns)),
    path("keys/", include(page_urlpatterns)),
    path("activity/", include(activity_urls.page_urlpatterns)),
    path("", include("chat.urls")),
]
