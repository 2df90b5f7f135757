"""Encryption of token fields at rest.

Keys come from ``CC_SYNC["ENCRYPTION_KEYS"]`` (settings or the environment, never the database), newest
first: the first key encrypts, every key decrypts, so a new key can be put in front without losing rows.
``python manage.py cc_sync_rotate_keys`` re-encrypts the stored tokens with the newest key.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .conf import list_setting
from .exceptions import CCSyncConfigurationError


def generate_key() -> str:
    """A new random key suitable for ``ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode()


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str | bytes, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key if isinstance(key, bytes) else key.encode()) for key in keys])
    except (ValueError, TypeError, AttributeError) as err:
        # Never echo the key material itself.
        raise CCSyncConfigurationError(
            "CC_SYNC['ENCRYPTION_KEYS'] must hold Fernet keys (32 url-safe base64-encoded bytes); "
            "make one with `python manage.py cc_sync_generate_key`."
        ) from err


def _fernet() -> MultiFernet:
    return _multifernet(tuple(list_setting("ENCRYPTION_KEYS")))


def check_keys() -> None:
    """Raise :class:`CCSyncConfigurationError` if the configured keys are unusable."""
    _fernet()


def encrypt(plaintext: str) -> str:
    """Encrypt with the newest key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """Decrypt with whichever configured key encrypted the value."""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as err:
        raise CCSyncConfigurationError(
            "A stored Constant Contact token cannot be decrypted with any key in "
            "CC_SYNC['ENCRYPTION_KEYS']; keep the old key in the list (after the new one) until "
            "`manage.py cc_sync_rotate_keys` has run."
        ) from err
