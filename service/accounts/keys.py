"""API keys: made here, shown once, stored only as an argon2id hash beside a public key id.

A key reads ``ws_<key id>_<secret>``: ``ws_`` makes it recognisable (in logs, in secret scanners),
the key id (12 hex digits, not secret) finds its row with one indexed lookup, and the secret is
``secrets.token_urlsafe(32)`` (256 random bits). The row holds the argon2id hash of the whole key;
``verify`` is argon2-cffi's, which compares digests in constant time.

Why cheap argon2 parameters (t=1, m=1 MiB, p=1: about 1 ms per check here, against ~0.5 s for the
library's defaults): hash stretching protects guessable secrets, such as passwords, against
offline guessing after a leak. A key is 256 random bits; nobody guesses it at any hash speed, so
the cost would buy no safety and would be paid on every write. The parameters are stored in each
hash, so raising them later leaves old keys valid.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PREFIX = "ws_"
KEY_ID_HEX = 12
_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_SHAPE = re.compile(rf"^{PREFIX}([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True)
class NewKey:
    key: str  # shown once, never stored
    key_id: str
    key_hash: str


def new_key() -> NewKey:
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key, key_id, _HASHER.hash(key))


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def key_id_of(token: str) -> str | None:
    """The public id in a well-formed key, else None."""
    match = _SHAPE.match(token)
    return match.group(1) if match else None


def verify(key_hash: str, token: str) -> bool:
    try:
        return _HASHER.verify(key_hash, token)
    except (VerificationError, InvalidHashError):
        return False
