"""Server-rendered key pages: create (the secret shown once), rotate, revoke, usage alerts."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from activity.forms import UsageAlertsForm
from keys import services
from keys.api import churn_limited
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed, KeyRevoked
from keys.forms import KeyCreateForm
from keys.models import ApiKey
from keys.presenters import keys_with_usage, price_list

BACKEND_DOWN = "The key service is unavailable right now; nothing was changed. Please try again shortly."


def render_keys(request: HttpRequest, *, form: KeyCreateForm | None, secret: str = "", new_key=None, status=200):
    context = {
        "form": form,
        "keys": keys_with_usage(request.user),
        "secret": secret,
        "new_key": new_key,
        "alerts_form": UsageAlertsForm(user=request.user),
        "prices": price_list() if form is not None else [],
    }
    return render(request, "keys/keys.html", context, status=status)


@never_cache
def keys_page(request: HttpRequest) -> HttpResponse:
    try:
        services.plan_sync()
    except BackendUnavailable:
        messages.error(request, BACKEND_DOWN)
        return render_keys(request, form=None, status=503)
    plans = services.plan_list()
    form = KeyCreateForm(request.POST or None, plans=plans)
    if request.method != "POST":
        return render_keys(request, form=form)
    if not form.is_valid():
        return render_keys(request, form=form, status=400)
    if churn_limited(request):
        messages.error(request, "You have created or rotated many keys in the last hour. Please wait a while.")
        return render_keys(request, form=form, status=429)
    plan = form.cleaned_data["plan"]
    try:
        key, secret = services.api_key_create(user=request.user, plan=plan)
    except KeyAlreadyExists:
        messages.error(request, f"You already have an active key on {plan.name}. Rotate or revoke it instead.")
        return render_keys(request, form=form, status=409)
    except (KeyCreateFailed, BackendUnavailable):
        messages.error(request, "The key could not be created; nothing was kept. Please try again.")
        return render_keys(request, form=form, status=500)
    # Rendered, not redirected: the secret must not be parked in the session to survive a redirect.
    return render_keys(request, form=KeyCreateForm(plans=plans), secret=secret, new_key=key)


@require_POST
@never_cache
def key_rotate(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.select_related("plan"), pk=key_id, owner=request.user)
    if churn_limited(request):
        messages.error(request, "You have created or rotated many keys in the last hour. Please wait a while.")
        return redirect("keys")
    try:
        secret = services.api_key_rotate(key=key, actor=request.user)
    except KeyRevoked:
        messages.error(request, "A revoked key cannot be rotated.")
        return redirect("keys")
    except (KeyCreateFailed, BackendUnavailable):
        messages.error(request, "The key could not be rotated; the old secret still works.")
        return redirect("keys")
    plans = services.plan_list()
    return render_keys(request, form=KeyCreateForm(plans=plans), secret=secret, new_key=key)


@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, owner=request.user)
    try:
        services.api_key_revoke(key=key, actor=request.user)
    except BackendUnavailable:
        messages.error(request, BACKEND_DOWN)
        return redirect("keys")
    messages.success(request, f"Key {key.prefix}… revoked. It is refused from now on.")
    return redirect("keys")


@require_POST
def usage_alerts(request: HttpRequest) -> HttpResponse:
    form = UsageAlertsForm(request.POST, user=request.user)
    form.is_valid()  # a checkbox: anything but a ticked box is "off"
    if form.save():
        messages.success(request, "Usage alerts are on: you get an email at 80% and at 100% of a key's limits.")
    else:
        messages.success(request, "Usage alerts are off. You can turn them on again here.")
    return redirect("keys")
