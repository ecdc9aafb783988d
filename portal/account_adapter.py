"""Tollgate's allauth adapter: emails link to SITE_URL, and mail that cannot go out is a message, not a 500."""

import logging
import smtplib
from urllib.parse import urlsplit, urlunsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import ratelimit
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest

logger = logging.getLogger("tollgate.email")

MAIL_FAILED = "We couldn't send the email right now; try again in a few minutes."
MAIL_FAILED_TAG = "mail-failed"  # the pages that would say "We have sent" tell the failure instead
# The context variables in which allauth's email templates carry links.
LINKS = ("activate_url", "password_reset_url", "signup_url")


def on_site(url: str) -> str:
    """`url` at the portal's configured address, whatever Host the request that built it had."""
    site = urlsplit(settings.SITE_URL)
    return urlunsplit(urlsplit(url)._replace(scheme=site.scheme, netloc=site.netloc))


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # allauth builds links and names the site from the request's Host, which may be an
        # internal name the proxy used; people must get the address they know.
        context = {
            **context,
            **{name: on_site(context[name]) for name in LINKS if name in context},
            "current_site": {"name": "Tollgate", "domain": urlsplit(settings.SITE_URL).netloc},
        }
        try:
            super().send_mail(template_prefix, email, context)
        except (smtplib.SMTPException, OSError) as exc:
            logger.error("could not send %s: %r", template_prefix, exc)
            self.request.tollgate_mail_failed = True
            messages.error(self.request, MAIL_FAILED, extra_tags=MAIL_FAILED_TAG)
            # Nothing went out, so the cooldown between verification emails must not swallow
            # the retry (signing in sends the verification email again).
            ratelimit.clear(self.request, action="confirm_email", key=email.lower())

    def add_message(
        self,
        request: HttpRequest,
        level: int,
        message_template: str | None = None,
        message_context: dict | None = None,
        extra_tags: str = "",
        message: str | None = None,
    ) -> None:
        if message_template == "account/messages/email_confirmation_sent.txt" and getattr(
            request, "tollgate_mail_failed", False
        ):
            return  # it was not sent; MAIL_FAILED says so
        super().add_message(request, level, message_template, message_context, extra_tags, message)

    def format_email_subject(self, subject: str) -> str:
        return f"[Tollgate] {subject}"
