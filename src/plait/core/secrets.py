"""Secrets Plait hands out (API tokens, write keys) and how they are stored: hashed.

Tokens and write keys are long random strings, so a SHA-256 digest is a safe, fast lookup
key; passwords, which people choose, are hashed with argon2 elsewhere.
"""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_secret(length: int = 32, prefix: str = "") -> str:
    """A random alphanumeric secret (about 190 bits for 32 characters)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def digest(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hint(secret: str) -> str:
    """A few leading characters, enough for a person to tell secrets apart."""
    return secret[:6] + "…"
