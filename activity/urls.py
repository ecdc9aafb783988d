from django.urls import path

from activity import api, views
from keys.urls import drf

api_urlpatterns = [
    path("requests", drf(api.RequestListApi), name="api-requests"),
]

page_urlpatterns = [
    path("", views.activity_page, name="activity"),
    path("export.csv", views.activity_export, name="activity-export"),
]
