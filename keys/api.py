"""The key API: DRF, session authentication with CSRF, browsable. One view per action."""

import logging
from http import HTTPStatus

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from keys import services
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed, KeyRevoked, TollgateKeyError
from keys.models import ApiKey
from keys.presenters import key_with_usage, keys_with_usage, message_response
from keys.serializers import (
    FIELD_ERRORS,
    DayUsageSerializer,
    DetailSerializer,
    KeyCreateInputSerializer,
    KeySerializer,
    MessageSerializer,
    PlanSerializer,
    SecretSerializer,
    UsageQuerySerializer,
    user_by_email,
)

log = logging.getLogger("tollgate.keys")

# The contract's answer to each of the keys app's errors, whichever view raised it.
ANSWERS: dict[type[TollgateKeyError], tuple[HTTPStatus, str]] = {
    KeyAlreadyExists: (HTTPStatus.CONFLICT, "Key already exists"),
    KeyRevoked: (HTTPStatus.CONFLICT, "A revoked key cannot be rotated; create a new one."),
    KeyCreateFailed: (HTTPStatus.INTERNAL_SERVER_ERROR, "create failed"),
    BackendUnavailable: (
        HTTPStatus.BAD_GATEWAY,
        "The key backend is unavailable; nothing was changed. Try again shortly.",
    ),
}


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """DRF's EXCEPTION_HANDLER: the keys app's errors become the contract's answers; the rest is DRF's."""
    for error, (status, text) in ANSWERS.items():
        if isinstance(exc, error):
            if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                log.warning("%s: %s", type(exc).__name__, exc)
            set_rollback()
            return message_response(text, status)
    return drf_exception_handler(exc, context)


def churn_limited(request: Request) -> bool:
    """Key creation and rotation share a per-user budget, so a script cannot churn keys."""
    return is_ratelimited(
        request, group="keys.churn", key="user", rate=settings.KEY_CHURN_RATE, method=ALL, increment=True
    )


def too_much_churn() -> HttpResponse:
    return message_response("Too many key changes; try again in an hour.", HTTPStatus.TOO_MANY_REQUESTS)


def owned_key(request: Request, key_id: int) -> ApiKey:
    # Another user's key is indistinguishable from a missing one.
    return get_object_or_404(ApiKey.objects.select_related("plan"), pk=key_id, owner=request.user)


class PlanListApi(APIView):
    @extend_schema(responses=PlanSerializer(many=True))
    def get(self, request: Request) -> Response:
        services.plan_sync()
        return Response(PlanSerializer(services.plan_list(), many=True).data)


class KeyCreateApi(APIView):
    @extend_schema(
        request=KeyCreateInputSerializer,
        responses={
            200: SecretSerializer,
            400: FIELD_ERRORS,
            403: DetailSerializer,
            409: MessageSerializer,
            429: MessageSerializer,
            500: MessageSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        services.plan_sync()
        form = KeyCreateInputSerializer(data=request.data, plans=services.plan_list())
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
            return too_much_churn()
        _key, secret = services.api_key_create(user=user, plan=form.validated_data["plan_name"], actor=request.user)
        return Response({"value": secret}, headers={"Cache-Control": "no-store"})


class KeyListApi(APIView):
    @extend_schema(responses=KeySerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(KeySerializer(keys_with_usage(request.user), many=True).data)


class KeyDetailApi(APIView):
    @extend_schema(responses={200: KeySerializer, 404: DetailSerializer})
    def get(self, request: Request, key_id: int) -> Response:
        return Response(KeySerializer(key_with_usage(owned_key(request, key_id))).data)

    @extend_schema(responses={204: None, 404: DetailSerializer})
    def delete(self, request: Request, key_id: int) -> Response:
        services.api_key_revoke(key=owned_key(request, key_id), actor=request.user)
        return Response(status=HTTPStatus.NO_CONTENT)


class KeyRotateApi(APIView):
    @extend_schema(
        request=None,
        responses={200: SecretSerializer, 404: DetailSerializer, 409: MessageSerializer, 429: MessageSerializer},
    )
    def post(self, request: Request, key_id: int) -> Response:
        key = owned_key(request, key_id)
        if churn_limited(request):
            return too_much_churn()
        secret = services.api_key_rotate(key=key, actor=request.user)
        return Response({"value": secret}, headers={"Cache-Control": "no-store"})


class KeyUsageApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("days", int, description="How many days back (1-366)", default=30)],
        responses={200: DayUsageSerializer(many=True), 400: FIELD_ERRORS, 404: DetailSerializer},
    )
    def get(self, request: Request, key_id: int) -> Response:
        key = owned_key(request, key_id)
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        days = services.api_key_usage(key=key, days=query.validated_data["days"])
        return Response(DayUsageSerializer(days, many=True).data)
