"""Conversations: the turns a model sees again and the model they ask, kept in the database."""

from dataclasses import dataclass

from chat.models import Conversation, Message
from keys import tokens
from keys.backends import get_backend
from keys.models import ApiKey
from proxy.catalog import Catalog
from proxy.endpoints.chat import ENDPOINT as CHAT

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


def turn_finish(*, conversation: Conversation, text: str, complete: bool, model: str = "") -> None:
    """Keep the answer, and the model that gave it (a fallback may have answered)."""
    if not text and not complete:
        return
    content = text if complete else text + " …[the answer was cut off]"
    Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content=content, model=model)


@dataclass(frozen=True)
class ModelChoice:
    """The models the chat page offers with one key, and the one it picks first."""

    key_id: int
    models: list[str]
    picked: str


def models_offered(catalog: Catalog, key: ApiKey) -> list[str]:
    """The models a chat with `key` may ask: those its plan grants that answer chats. None where a
    gateway meters the key, as the gateway picks its model."""
    if not get_backend().serves_model_api:
        return []
    return [model.name for model in catalog.for_plan(key.plan_id) if CHAT.name in model.endpoints]


def model_choice(catalog: Catalog, key: ApiKey, remembered: str = "") -> ModelChoice:
    """What the picker shows for `key`: the conversation's model if the key's plan grants it, else the
    default model, else the first one granted."""
    offered = models_offered(catalog, key)
    preferred = [name for name in (remembered, catalog.default, *offered) if name in offered]
    return ModelChoice(key_id=key.pk, models=offered, picked=preferred[0] if preferred else "")


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
