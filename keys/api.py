"""The key API: DRF, session authentication with CSRF, browsable. One view per action."""

from http import HTTPStatus

from django.conf import settings
from django.shortcuts import get_object_or_404
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keys import services
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed
from keys.models import ApiKey
from keys.serializers import (
    DayUsageSerializer,
    KeyCreateInputSerializer,
    KeySerializer,
    MessageSerializer,
    PlanSerializer,
    SecretSerializer,
    UsageQuerySerializer,
    user_by_email,
)


def message(text: str, status: int) -> Response:
    return Response({"message": text}, status=status)


def churn_limited(request: Request) -> bool:
    """Key creation and rotation share a per-user budget, so a script cannot churn keys."""
    return is_ratelimited(
        request, group="keys.churn", key="user", rate=settings.KEY_CHURN_RATE, method=ALL, increment=True
    )


def backend_failure(exc: Exception) -> Response:
    if isinstance(exc, KeyAlreadyExists):
        return message("Key already exists", HTTPStatus.CONFLICT)
    if isinstance(exc, KeyCreateFailed):
        return message("create failed", HTTPStatus.INTERNAL_SERVER_ERROR)
    return message("The key backend is unavailable; nothing was changed. Try again shortly.", HTTPStatus.BAD_GATEWAY)


def owned_key(request: Request, key_id: int) -> ApiKey:
    # Another user's key is indistinguishable from a missing one.
    return get_object_or_404(ApiKey.objects.select_related("plan"), pk=key_id, owner=request.user)


def with_window(key: ApiKey) -> ApiKey:
    try:
        key.window = services.api_key_window_usage(key=key)
    except BackendUnavailable:
        # The key list stays usable when usage figures are not; they show as null.
        key.window = None
    return key


class PlanListApi(APIView):
    @extend_schema(responses=PlanSerializer(many=True))
    def get(self, request: Request) -> Response:
        try:
            plans = services.plan_list()
        except BackendUnavailable as exc:
            return backend_failure(exc)
        return Response(PlanSerializer(plans, many=True).data)


class KeyCreateApi(APIView):
    @extend_schema(
        request=KeyCreateInputSerializer,
        responses={200: SecretSerializer, 400: None, 403: MessageSerializer, 409: MessageSerializer},
    )
    def post(self, request: Request) -> Response:
        try:
            plans = services.plan_list()
        except BackendUnavailable as exc:
            return backend_failure(exc)
        form = KeyCreateInputSerializer(data=request.data, plans=plans)
        form.is_valid(raise_exception=True)
        user = request.user
        email = form.validated_data.get("user")
        if email and email.lower() != (user.email or "").lower():
            if not user.is_staff:
                raise PermissionDenied("Only staff may create keys for another user.")
            user = user_by_email(email)
            if user is None:
                return Response({"user": [f"No user with the email {email}."]}, status=HTTPStatus.BAD_REQUEST)
        if churn_limited(request):
            return message("Too many key changes; try again in an hour.", HTTPStatus.TOO_MANY_REQUESTS)
        try:
            _key, secret = services.api_key_create(user=user, plan=form.validated_data["plan_name"], actor=request.user)
        except (KeyAlreadyExists, KeyCreateFailed, BackendUnavailable) as exc:
            return backend_failure(exc)
        return Response({"value": secret}, headers={"Cache-Control": "no-store"})


class KeyListApi(APIView):
    @extend_schema(responses=KeySerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(owner=request.user).select_related("plan")
        return Response(KeySerializer([with_window(key) for key in keys], many=True).data)


class KeyDetailApi(APIView):
    @extend_schema(responses=KeySerializer)
    def get(self, request: Request, key_id: int) -> Response:
        return Response(KeySerializer(with_window(owned_key(request, key_id))).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: int) -> Response:
        key = owned_key(request, key_id)
        try:
            services.api_key_revoke(key=key, actor=request.user)
        except BackendUnavailable as exc:
            return backend_failure(exc)
        return Response(status=HTTPStatus.NO_CONTENT)


class KeyRotateApi(APIView):
    @extend_schema(request=None, responses={200: SecretSerializer, 409: MessageSerializer})
    def post(self, request: Request, key_id: int) -> Response:
        key = owned_key(request, key_id)
        if key.status != ApiKey.Status.ACTIVE:
            return message("A revoked key cannot be rotated; create a new one.", HTTPStatus.CONFLICT)
        if churn_limited(request):
            return message("Too many key changes; try again in an hour.", HTTPStatus.TOO_MANY_REQUESTS)
        try:
            secret = services.api_key_rotate(key=key, actor=request.user)
        except (KeyCreateFailed, BackendUnavailable) as exc:
            return backend_failure(exc)
        return Response({"value": secret}, headers={"Cache-Control": "no-store"})


class KeyUsageApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("days", int, description="How many days back (1-366)", default=30)],
        responses=DayUsageSerializer(many=True),
    )
    def get(self, request: Request, key_id: int) -> Response:
        key = owned_key(request, key_id)
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            days = services.api_key_usage(key=key, days=query.validated_data["days"])
        except BackendUnavailable as exc:
            return backend_failure(exc)
        return Response(DayUsageSerializer(days, many=True).data)
