"""What the model API meters, as a test reads it: the bytes that bound a request's prompt."""

import httpx


def json_body(payload: dict) -> bytes:
    """The bytes an httpx client sends for `json=payload`: what bounds a model API call's prompt."""
    return httpx.Request("POST", "http://127.0.0.1/", json=payload).content
