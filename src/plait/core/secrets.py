"""Secrets Plait hands out (API tokens, write keys) and how they are stored: hashed.

Tokens and write keys are long random strings, so a SHA-256 digest is a safe, fast lookup
key; passwords, which people choose, are hashed with argon2 elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import string
from pathlib import Path

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


def signing_key(home: Path, configured: str | None = None) -> str:
    """The key that signs session cookies: ``PLAIT_SECRET_KEY`` if set, else one generated on
    first use and kept in ``PLAIT_HOME/secret_key`` (readable by its owner only), so every
    worker process and every restart signs with the same key."""
    if configured:
        return configured
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        candidate = home / f".secret_key.{os.getpid()}"
        candidate.write_text(new_secret(64))
        candidate.chmod(0o600)
        try:
            os.link(candidate, path)  # atomic: the first process to get here wins
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return path.read_text().strip()
