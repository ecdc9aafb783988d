"""Conversations: the turns a model sees again, kept in the database."""

from chat.models import Conversation, Message
from keys import tokens

HISTORY_TURNS = 20  # earlier messages sent upstream with each new one
TITLE_LENGTH = 60


def _title(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"


def history(conversation: Conversation) -> list[dict]:
    """The earlier turns the model sees again, oldest first."""
    earlier = conversation.messages.order_by("-created", "-pk")[:HISTORY_TURNS]
    return [{"role": m.role, "content": m.content} for m in reversed(earlier)]


def turn_store(*, conversation: Conversation, text: str) -> None:
    """Keep the user's message (once the request is admitted)."""
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)
    if not conversation.title:
        conversation.title = _title(text)
    conversation.save(update_fields=["title", "updated"])


def turn_finish(*, conversation: Conversation, text: str, complete: bool) -> None:
    if not text and not complete:
        return
    content = text if complete else text + " …[the answer was cut off]"
    Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content=content)


def query_history(*, presented: str, external_id: str) -> list[dict]:
    """The earlier turns of the `/query?uuid=` conversation of the key presented (each key sees
    only its own), read before admission so that the prompt's tokens can be reserved."""
    if not tokens.is_well_formed(presented):
        return []
    conversation = Conversation.objects.filter(
        key__digest=tokens.digest(presented), external_id=external_id, owner=None
    ).first()
    return history(conversation) if conversation else []


def query_turn_store(*, key_id: int, external_id: str, text: str) -> Conversation:
    """For `/query?uuid=`: the key's conversation (made if new) with this message stored in it."""
    conversation = Conversation.objects.filter(key_id=key_id, external_id=external_id, owner=None).first()
    conversation = conversation or Conversation.objects.create(key_id=key_id, external_id=external_id)
    turn_store(conversation=conversation, text=text)
    return conversation
