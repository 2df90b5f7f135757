"""Encryption of token fields at rest.

Keys come from ``CC_SYNC["ENCRYPTION_KEYS"]`` (settings or the environment, never the database), newest
first: the first key encrypts, every key decrypts, so a new key can be put in front without losing rows.
``python manage.py cc_sync_rotate_keys`` re-encrypts the stored tokens with the newest key.

A stored token that no configured key decrypts (a rotation that dropped the old key, a fixture made under
another key) is never an error when its row is read: it comes back as :class:`Undecryptable`, the
ciphertext kept unchanged, so restoring the old key reads it again and nothing is lost. Only *using* it
raises :class:`UnreadableTokens`, a :class:`~cc_sync.exceptions.ReconnectRequired`: signups wait for the
key or a reconnect instead of failing.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .conf import app_settings
from .exceptions import CCSyncConfigurationError, ReconnectRequired

UNREADABLE_MESSAGE = (
    "The stored Constant Contact tokens cannot be read with the configured ENCRYPTION_KEYS: restore the "
    "old key or reconnect (put the old key back after the new one in CC_SYNC['ENCRYPTION_KEYS'], or click "
    "Reconnect on the admin connection page)."
)


class Undecryptable(str):
    """A stored token that none of the configured keys decrypts; its value is the ciphertext, unchanged.

    Saving a row that holds one writes the same ciphertext back, so a restored key can still read it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<Undecryptable token>"


class UnreadableTokens(ReconnectRequired):
    """A token was used that the configured keys cannot decrypt; restore the old key or reconnect."""

    # A template that touches a token shows nothing instead of failing the whole admin page.
    silent_variable_failure = True

    def __init__(self, message: str = UNREADABLE_MESSAGE) -> None:
        super().__init__(message, error_key="tokens_unreadable")


def is_readable(value: str | None) -> bool:
    """False for a stored token that the configured keys cannot decrypt (an :class:`Undecryptable`)."""
    return not isinstance(value, Undecryptable)


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
    return _multifernet(tuple(app_settings.ENCRYPTION_KEYS))


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


def decrypt_or_keep(ciphertext: str) -> str:
    """The plaintext, or :class:`Undecryptable` holding the ciphertext when no configured key fits.

    Missing or malformed keys count as not fitting too: reading a row must never fail on them (the
    visitor's form reads the connection row); ``manage.py check`` reports both.
    """
    try:
        return decrypt(ciphertext)
    except CCSyncConfigurationError:
        return Undecryptable(ciphertext)
