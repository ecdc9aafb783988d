"""The activity page and its CSV: the signed-in user's requests, through the one FilterSet."""

from http import HTTPStatus

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from activity import services
from activity.filters import RequestLogFilter
from activity.serializers import FIELDS

PER_PAGE = 50


def own_filter(request: HttpRequest) -> RequestLogFilter:
    return RequestLogFilter(request.GET, queryset=services.request_log_of(user=request.user), request=request)


def activity_page(request: HttpRequest) -> HttpResponse:
    rows = own_filter(request)
    context = {"filter": rows, "page": None, "models_seen": []}
    if not rows.is_valid():
        return render(request, "activity/activity.html", context, status=HTTPStatus.BAD_REQUEST)
    context["page"] = Paginator(rows.qs.select_related("key"), PER_PAGE).get_page(request.GET.get("page"))
    context["models_seen"] = (
        services.request_log_of(user=request.user).order_by("model").values_list("model", flat=True).distinct()
    )
    return render(request, "activity/activity.html", context)


def activity_export(request: HttpRequest) -> HttpResponse:
    rows = own_filter(request)
    if not rows.is_valid():
        return HttpResponseBadRequest(rows.errors.as_text(), content_type="text/plain; charset=utf-8")
    # An async iterator, so that under ASGI the rows stream instead of being gathered first.
    # values(), not values_list(): Django 5.2's values_list().aiterator() runs its query on the loop.
    lines = services.request_log_csv(rows.qs.values(*FIELDS).aiterator())
    filename = f"tollgate-requests-{timezone.now():%Y-%m-%d}.csv"
    return StreamingHttpResponse(
        lines,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "private, no-store"},
    )
