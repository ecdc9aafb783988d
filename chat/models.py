import uuid

from django.conf import settings
from django.db import models

from keys.models import ApiKey


class Conversation(models.Model):
    """A conversation whose earlier turns the model sees.

    Chat-page conversations belong to a user; `/query?uuid=` conversations belong to the key
    that made them, so one key's callers cannot read another key's conversation.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    external_id = models.CharField(max_length=100, blank=True, help_text="The `uuid` given to /query.")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(max_length=80, blank=True)
    model = models.CharField(
        max_length=100,
        blank=True,
        help_text="The model the chat page asks (one the key's plan grants); empty: the default.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated"]
        indexes = [models.Index(fields=["key", "external_id"])]

    def __str__(self) -> str:
        return self.title or str(self.public_id)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField()
    model = models.CharField(max_length=100, blank=True, help_text="The model that answered (an assistant's turn).")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
