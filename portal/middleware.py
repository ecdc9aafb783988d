"""Staff need a second factor before they reach the admin (settings.STAFF_MFA_REQUIRED)."""

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


class StaffMFARequiredMiddleware:
    """Sends signed-in staff without an enrolled second factor from any /admin/ page to enrol one.

    A middleware rather than a check in each admin view, so that no admin page, present or added
    later, can be reached with a password alone.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if not settings.STAFF_MFA_REQUIRED or request.resolver_match.namespace != "admin":
            return None
        user = request.user
        if not (user.is_authenticated and user.is_staff) or is_mfa_enabled(user):
            return None
        messages.warning(request, "Staff need two-factor sign-in for the admin: set up an authenticator app first.")
        return redirect("mfa_activate_totp")
