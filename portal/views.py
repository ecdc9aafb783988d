from datetime import date
from http import HTTPStatus

from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from keys.presenters import keys_with_usage


def usage_chart(rows, days: int = 30) -> dict:
    """Daily totals across the user's keys, as bar heights for an inline SVG."""
    totals: dict[date, int] = {}
    for row in rows:
        for day in row.days or []:
            totals[day.day] = totals.get(day.day, 0) + day.requests
    series = sorted(totals.items())[-days:]
    peak = max((n for _, n in series), default=0)
    bars = [
        {"day": day, "requests": n, "x": i * 10, "height": round(80 * n / peak) if peak else 0}
        for i, (day, n) in enumerate(series)
    ]
    for bar in bars:
        bar["y"] = 90 - bar["height"]
    return {"bars": bars, "peak": peak, "total": sum(n for _, n in series), "width": len(bars) * 10}


def dashboard(request: HttpRequest) -> HttpResponse:
    rows = keys_with_usage(request.user, days=30)
    return render(request, "portal/dashboard.html", {"rows": rows, "chart": usage_chart(rows)})


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: the database and the cache answer. Says nothing about configuration."""
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
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=HTTPStatus.SERVICE_UNAVAILABLE)
    return JsonResponse({"status": "ok"})
