"""Local API key secrets: `tg_` + 32 random base62 characters + a 6-character base62 checksum.

The checksum lets a malformed or mistyped key be refused before any database lookup.
Only the SHA-256 digest is stored.
"""

import hashlib
import secrets
import string
import zlib

ALPHABET = string.digits + string.ascii_letters
PREFIX = "tg_"
BODY_LENGTH = 32
CHECKSUM_LENGTH = 6
SECRET_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
DISPLAY_LENGTH = len(PREFIX) + 6
_ALLOWED = frozenset(ALPHABET)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_secret() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return PREFIX + body + checksum(body)


def is_well_formed(secret: str) -> bool:
    """Shape and checksum only: no database, constant work for any input length."""
    if not isinstance(secret, str) or len(secret) != SECRET_LENGTH or not secret.startswith(PREFIX):
        return False
    body, check = secret[len(PREFIX) : -CHECKSUM_LENGTH], secret[-CHECKSUM_LENGTH:]
    if not _ALLOWED.issuperset(body) or not _ALLOWED.issuperset(check):
        return False
    return secrets.compare_digest(checksum(body), check)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_LENGTH]


def mask(presented: str) -> str:
    """What may be logged of a presented key: its first characters and its length."""
    visible = "".join(c if c.isprintable() else "?" for c in presented[:DISPLAY_LENGTH])
    return f"{visible}…({len(presented)})"
