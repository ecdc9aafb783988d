"""`{% if messages|mail_failed %}`: whether the page reports an email that could not be sent
(portal/account_adapter.py), so that it does not also say that one was."""

from collections.abc import Iterable

from django import template
from django.contrib.messages.storage.base import Message

from portal.account_adapter import MAIL_FAILED_TAG

register = template.Library()


@register.filter
def mail_failed(messages: Iterable[Message]) -> bool:
    return any(MAIL_FAILED_TAG in message.extra_tags.split() for message in messages)
