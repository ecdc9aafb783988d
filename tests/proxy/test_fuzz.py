"""Property tests: whatever a client sends to the model API, the answer is never a 5xx,
and an answered request counts once, a refused one nothing."""

import json
from http import HTTPStatus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.asgi import complete, fetch, query
from tests.metering import usage

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
def roomy(alice, make_plan, make_key):
    """A key (and its secret) whose quota no run of examples uses up."""
    return make_key(alice, make_plan(quota=1_000_000))


def counts_only_answers(key, before: int, response) -> bool:
    """Whether an answer counted once and a refusal nothing."""
    return usage(key).requests == before + (response.status_code == HTTPStatus.OK)


@FUZZ
@given(body=bodies)
def test_v1_bodies_never_cause_a_server_error(roomy, body):
    key, secret = roomy
    before = usage(key).requests
    response = complete(secret, json.dumps(body))
    assert response.status_code < 500, response.content[:300]
    assert counts_only_answers(key, before, response)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_v1_raw_bytes_never_cause_a_server_error(roomy, raw):
    key, secret = roomy
    before = usage(key).requests
    response = complete(secret, raw, bearer=False)
    assert response.status_code < 500
    assert counts_only_answers(key, before, response)


@FUZZ
@given(text=st.text(max_size=300), conversation=st.text(max_size=120))
def test_query_parameters_never_cause_a_server_error(roomy, text, conversation):
    key, secret = roomy
    before = usage(key).requests
    response = query(secret, message=text, uuid=conversation)
    assert response.status_code < 500
    assert counts_only_answers(key, before, response)


@FUZZ
@given(presented=header_text, authorization=header_text)
def test_hostile_keys_are_refused_not_crashed_on(roomy, presented, authorization):
    key, secret = roomy
    before = usage(key).requests
    refused = query(presented, message="hi")
    v1 = fetch("get", "/v1/models", headers={"Authorization": authorization})
    assert refused.status_code == HTTPStatus.FORBIDDEN or presented == secret
    assert v1.status_code == HTTPStatus.UNAUTHORIZED
    assert usage(key).requests == before
