"""Property tests: whatever a client sends to the model API, the answer is never a 5xx,
and a rejected request counts nothing."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.models import Usage
from tests.asgi import fetch

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "wizard", 3]), "content": json_values}
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"messages": st.lists(message, max_size=3)},
        optional={"stream": json_values, "model": json_values, "temperature": json_values, "max_tokens": json_values},
    ),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@pytest.fixture
def secret(alice, make_plan, make_key):
    return make_key(alice, make_plan(quota=1_000_000))[1]


def counted() -> int:
    return sum(Usage.objects.values_list("requests", flat=True))


@FUZZ
@given(body=bodies)
def test_v1_bodies_never_cause_a_server_error(secret, body):
    before = counted()
    response = fetch(
        "post",
        "/v1/chat/completions",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert counted() == before


@FUZZ
@given(raw=st.binary(max_size=200))
def test_v1_raw_bytes_never_cause_a_server_error(secret, raw):
    before = counted()
    response = fetch(
        "post", "/v1/chat/completions", data=raw, content_type="application/json", headers={"x-api-key": secret}
    )
    assert response.status_code < 500
    if response.status_code >= 400:
        assert counted() == before


@FUZZ
@given(text=st.text(max_size=300), conversation=st.text(max_size=120))
def test_query_parameters_never_cause_a_server_error(secret, text, conversation):
    before = counted()
    response = fetch("get", "/query", data={"message": text, "uuid": conversation}, headers={"x-api-key": secret})
    assert response.status_code < 500
    if response.status_code >= 400:
        assert counted() == before


@FUZZ
@given(presented=header_text, authorization=header_text)
def test_hostile_keys_are_refused_not_crashed_on(secret, presented, authorization):
    before = counted()
    query = fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": presented})
    v1 = fetch("get", "/v1/models", headers={"Authorization": authorization})
    assert query.status_code == 403 or presented == secret
    assert v1.status_code == 401
    assert counted() == before
