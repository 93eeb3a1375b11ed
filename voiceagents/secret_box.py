"""Secrets the app must send on (the header values of agents' HTTP tools), stored
encrypted: Fernet from `cryptography` (AES-128-CBC with an HMAC-SHA256 tag), so a copy of
the database alone does not give them away.

Keys come from SECRETS_ENCRYPTION_KEYS (comma-separated Fernet keys: the first encrypts,
every one decrypts, so a key is rotated by putting a new one first). When it is unset
the key is derived from SECRET_KEY with HKDF; changing SECRET_KEY then makes stored
values unreadable (they must be entered again), which is why a deployment should set
its own keys."""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored value none of the configured keys can decrypt."""


def key_from_secret_key(secret_key: str) -> bytes:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"voiceagents secret box"
    ).derive(secret_key.encode())
    return base64.urlsafe_b64encode(derived)


@functools.cache
def _box(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        return MultiFernet([Fernet(key_from_secret_key(secret_key))])
    return MultiFernet([Fernet(key) for key in keys])


def box() -> MultiFernet:
    return _box(tuple(settings.SECRETS_ENCRYPTION_KEYS), settings.SECRET_KEY)


def seal(plaintext: str) -> str:
    return box().encrypt(plaintext.encode()).decode("ascii")


def unseal(sealed: str) -> str:
    try:
        return box().decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with SECRETS_ENCRYPTION_KEYS (or SECRET_KEY): "
            "was the key changed? Enter the value again."
        ) from exc
