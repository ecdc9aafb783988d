"""An SMTP server on loopback (aiosmtpd) that keeps what it is sent."""

import email
import email.policy
from contextlib import contextmanager
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from loopback.servers import free_port


class MailSink:
    """An SMTP server (aiosmtpd) on a loopback port that keeps what it is sent, as parsed messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@contextmanager
def smtp_server():
    """A MailSink listening on loopback."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
