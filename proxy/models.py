"""The model catalog: the models Tollgate serves, each from its own OpenAI-compatible upstream."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from keys import money
from keys.models import MAX_OUTPUT_TOKENS, bounded, optional_limit

ENDPOINTS = ("chat", "completions", "responses", "embeddings")
DEFAULT_ENDPOINTS = ["chat", "completions", "responses"]
DEFAULT_MAX_MEDIA_TOKENS = 3000
FIELD_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "A field's name, like top_k.")


def default_endpoints() -> list[str]:
    return list(DEFAULT_ENDPOINTS)


def validate_endpoints(value) -> None:
    if (
        not isinstance(value, list)
        or not value
        or not all(e in ENDPOINTS for e in value)
        or len(set(value)) < len(value)
    ):
        raise ValidationError(f"A list of endpoints from {', '.join(ENDPOINTS)}, each once.")


def validate_field_names(value) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("A list of field names.")
    for name in value:
        FIELD_NAME(name)


def price_field(tokens: str) -> models.DecimalField:
    """A price per million tokens, in CURRENCY, to the sixth decimal (keys/money.py); empty: free."""
    return models.DecimalField(
        max_digits=4 + money.DECIMALS,
        decimal_places=money.DECIMALS,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(money.MAX_PRICE)],
        help_text=f"Optional: the price of a million {tokens} tokens, in CURRENCY. Empty: free.",
    )


ENV_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment variable's name, like FAST_API_KEY.")


class LanguageModel(models.Model):
    """What clients send as `model`, and where Tollgate sends it.

    The upstream's secret is never stored: `api_key_env` names the environment variable that holds it.
    """

    name = models.CharField(max_length=100, unique=True, help_text="What clients send as `model`.")
    base_url = models.URLField(
        max_length=300, help_text="An OpenAI-compatible base URL, e.g. https://api.example.com/v1"
    )
    upstream_model = models.CharField(
        max_length=100, blank=True, help_text="The model's name upstream; empty means the same as `name`."
    )
    api_key_env = models.CharField(
        "API key variable",
        max_length=100,
        blank=True,
        validators=[ENV_NAME],
        help_text="The NAME of the environment variable holding the upstream's bearer token.",
    )
    max_output_tokens = optional_limit(
        models.PositiveIntegerField, MAX_OUTPUT_TOKENS, "Optional cap on the tokens one answer may produce."
    )
    endpoints = models.JSONField(
        default=default_endpoints,
        validators=[validate_endpoints],
        help_text=f"The endpoints it serves, from {', '.join(ENDPOINTS)}.",
    )
    context_window = optional_limit(
        models.PositiveIntegerField,
        MAX_OUTPUT_TOKENS,
        "Optional: the most tokens a prompt can hold. Bounds the prompt's reservation; "
        "needed for previous_response_id.",
    )
    max_media_tokens = models.PositiveIntegerField(
        default=DEFAULT_MAX_MEDIA_TOKENS,
        validators=bounded(MAX_OUTPUT_TOKENS),
        help_text="Tokens reserved for each image, audio or file part of a prompt.",
    )
    extra_fields = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_field_names],
        help_text="Request fields beyond OpenAI's that this upstream takes (vLLM's top_k, say).",
    )
    input_price = price_field("prompt")
    output_price = price_field("completion")
    fallbacks = models.ManyToManyField("self", through="Fallback", symmetrical=False, related_name="+", blank=True)
    active = models.BooleanField(default=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name


class Fallback(models.Model):
    """`to` is tried when `model`'s upstream fails before its first byte, in `position` order."""

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="fallback_links")
    to = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["model", "position"]
        constraints = [models.UniqueConstraint(fields=["model", "to"], name="one_fallback_link_per_pair")]

    def __str__(self) -> str:
        return f"{self.model} → {self.to}"

    def clean(self) -> None:
        if self.model_id is not None and self.model_id == self.to_id:
            raise ValidationError({"to": "A model cannot fall back to itself."})
