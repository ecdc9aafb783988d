from collections import Counter
from datetime import date
from http import HTTPStatus

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from activity.services import window_by_model
from keys.presenters import KeyRow, keys_with_usage
from proxy.health import upstream_states


def usage_chart(rows: list[KeyRow], days: int = 30) -> dict:
    """Daily totals across the user's keys for an inline SVG: requests as bars, tokens as a line,
    each on its own scale (bars 10 wide, the baseline at y=90, the day of the peak 80 high)."""
    requests: Counter[date] = Counter()
    tokens: Counter[date] = Counter()
    for row in rows:
        for day in row.days or []:
            requests[day.day] += day.requests
            tokens[day.day] += day.tokens
    span = sorted(requests.keys() | tokens.keys())[-days:]
    peak = max((requests[day] for day in span), default=0)
    token_peak = max((tokens[day] for day in span), default=0)

    def height(n: int, top: int) -> int:
        return round(80 * n / top) if top else 0

    bars = [
        {
            "day": day,
            "requests": requests[day],
            "tokens": tokens[day],
            "x": i * 10,
            "y": 90 - height(requests[day], peak),
            "height": height(requests[day], peak),
        }
        for i, day in enumerate(span)
    ]
    line = " ".join(f"{bar['x'] + 5},{90 - height(bar['tokens'], token_peak)}" for bar in bars)
    return {
        "bars": bars,
        "line": line,
        "peak": peak,
        "token_peak": token_peak,
        "total": sum(bar["requests"] for bar in bars),
        "total_tokens": sum(bar["tokens"] for bar in bars),
        "width": len(bars) * 10,
    }


def dashboard(request: HttpRequest) -> HttpResponse:
    rows = keys_with_usage(request.user, days=30)
    by_model = window_by_model([row.key for row in rows], timezone.now())
    context = {
        "rows": rows,
        "chart": usage_chart(rows),
        "by_model": by_model,
        "by_model_total": {kind: sum(line[kind] for line in by_model) for kind in ("requests", "tokens", "cost")},
    }
    return render(request, "portal/dashboard.html", context)


@login_not_required
@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: the status says whether Tollgate itself works (its database and cache
    answer); `upstreams` says which models' upstreams answer, and never makes it a 503."""
    failing = await sync_to_async(failing_services)()
    upstreams = None if "database" in failing else await upstream_states()  # the models are in it
    if failing:
        body = {"status": "unavailable", "failing": failing, "upstreams": upstreams}
        return JsonResponse(body, status=HTTPStatus.SERVICE_UNAVAILABLE)
    return JsonResponse({"status": "ok", "upstreams": upstreams})


def failing_services() -> list[str]:
    failing = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        failing.append("database")
    try:
        cache.set("healthz", "ok", 5)
        if cache.get("healthz") != "ok":
            failing.append("cache")
    except Exception:  # any cache backend's connection error
        failing.append("cache")
    return failing


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A path that names nothing: under `/api/` the key API's own 404 (`{"detail": ...}`, as DRF
    answers), so that a client never has to parse a page; elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=HTTPStatus.NOT_FOUND)
    return page_not_found(request, exception)
