"""The request log as JSON: DRF, session authentication like the key API."""

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination

from activity import services
from activity.filters import RequestLogFilter
from activity.models import RequestLog
from activity.serializers import RequestLogSerializer
from keys.serializers import FIELD_ERRORS, DetailSerializer


class NewestFirst(CursorPagination):
    page_size = 50
    # `id` breaks ties between requests logged in the same microsecond.
    ordering = ("-at", "-id")


@extend_schema_view(
    get=extend_schema(
        summary="Your requests, newest first",
        description="The request log of your keys.",
        responses={200: RequestLogSerializer(many=True), 400: FIELD_ERRORS, 404: DetailSerializer},  # 404: a bad cursor
    )
)
class RequestListApi(ListAPIView):
    serializer_class = RequestLogSerializer
    pagination_class = NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = RequestLogFilter

    def get_queryset(self) -> QuerySet[RequestLog]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular, drawing the schema signed out
            return RequestLog.objects.none()
        return services.request_log_of(user=self.request.user)
