"""Conversations: the turns a model sees again, kept in the database."""

from chat.models import Conversation, Message

HISTORY_TURNS = 20  # earlier messages sent upstream with each new one
TITLE_LENGTH = 60


def _title(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"


def turn_begin(*, conversation: Conversation, text: str) -> list[dict]:
    """Store the user's message; return it with the earlier turns, oldest first, for the model."""
    earlier = list(conversation.messages.order_by("-created", "-pk")[:HISTORY_TURNS])
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)
    if not conversation.title:
        conversation.title = _title(text)
    conversation.save(update_fields=["title", "updated"])
    history = [{"role": m.role, "content": m.content} for m in reversed(earlier)]
    return history + [{"role": "user", "content": text}]


def turn_finish(*, conversation: Conversation, text: str, complete: bool) -> None:
    if not text and not complete:
        return
    content = text if complete else text + " …[the answer was cut off]"
    Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content=content)


def query_conversation(*, key_id: int, external_id: str) -> Conversation:
    """The `/query?uuid=` conversation of this key (each key sees only its own)."""
    conversation = Conversation.objects.filter(key_id=key_id, external_id=external_id, owner=None).first()
    return conversation or Conversation.objects.create(key_id=key_id, external_id=external_id)


def query_turn_begin(*, key_id: int, external_id: str, text: str) -> tuple[Conversation, list[dict]]:
    """For `/query?uuid=`: the key's conversation (made if new) with this message stored in it."""
    conversation = query_conversation(key_id=key_id, external_id=external_id)
    return conversation, turn_begin(conversation=conversation, text=text)
