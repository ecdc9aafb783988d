from hypothesis import given
from hypothesis import strategies as st

from keys import tokens


def test_a_generated_secret_is_well_formed():
    secret = tokens.generate_secret()
    assert secret.startswith("tg_") and len(secret) == 3 + 32 + 6
    assert tokens.is_well_formed(secret)


def test_secrets_differ():
    assert len({tokens.generate_secret() for _ in range(1000)}) == 1000


def test_one_changed_character_breaks_the_checksum():
    secret = tokens.generate_secret()
    for i in range(3, len(secret)):
        changed = secret[:i] + ("a" if secret[i] != "a" else "b") + secret[i + 1 :]
        assert not tokens.is_well_formed(changed)


@given(st.text(max_size=200) | st.text(min_size=38, max_size=38).map(lambda t: "tg_" + t))
def test_arbitrary_text_is_refused_without_error(text):
    assert tokens.is_well_formed(text) is False


@given(st.text(alphabet=tokens.ALPHABET, min_size=32, max_size=32))
def test_any_body_with_its_checksum_parses(body):
    assert tokens.is_well_formed("tg_" + body + tokens.checksum(body))


@given(
    st.text(alphabet=tokens.ALPHABET, min_size=32, max_size=32),
    st.text(alphabet=tokens.ALPHABET, min_size=6, max_size=6),
)
def test_a_wrong_checksum_is_refused(body, check):
    assert tokens.is_well_formed("tg_" + body + check) == (check == tokens.checksum(body))


def test_the_mask_shows_only_the_prefix_and_length():
    secret = tokens.generate_secret()
    masked = tokens.mask(secret)
    assert masked.startswith(secret[:9]) and secret[9:] not in masked
    assert tokens.mask("\x00\x1b[31m") == "??[31m…(6)"
