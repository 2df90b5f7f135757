"""Model fields."""

from __future__ import annotations

from typing import Any

from django.db import models

from . import crypto
from .exceptions import CCSyncConfigurationError

# Every Fernet token starts with this (version byte 0x80, base64-encoded).
_FERNET_PREFIX = "gAAAAA"


class EncryptedTextField(models.TextField):
    """A text field stored encrypted (Fernet); the empty string is stored as is.

    Serialisation (``dumpdata``) writes the ciphertext too, and ``loaddata`` decrypts it back, so fixtures
    and backups made that way never hold a plain token.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return crypto.encrypt(value) if value else ""

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if isinstance(value, str) and value.startswith(_FERNET_PREFIX):
            try:
                return crypto.decrypt(value)
            except CCSyncConfigurationError:
                return value
        return value
