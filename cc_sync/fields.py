"""Model fields."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from . import crypto

# Every Fernet token starts with this (version byte 0x80, base64-encoded).
_FERNET_PREFIX = "gAAAAA"


class EncryptedAttribute(DeferredAttribute):
    """Reading a token that the configured keys cannot decrypt raises :class:`crypto.UnreadableTokens`.

    So no code path can send the ciphertext to CC as if it were a token, and every caller that uses a token
    (the worker, Refresh now) gets a :class:`~cc_sync.exceptions.ReconnectRequired`: signups are held.
    Loading the row, saving it, ``dumpdata``/``loaddata`` and :func:`unreadable_fields` never raise.
    """

    def __get__(self, instance: models.Model | None, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        # An unsaved instance is a fixture being loaded: Django's raw save reads the attribute to store it
        # unchanged. Rows read from the database are what the code uses as tokens.
        if instance is not None and not instance._state.adding and not crypto.is_readable(value):
            raise crypto.UnreadableTokens()
        return value

    def __set__(self, instance: models.Model, value: Any) -> None:
        # A data descriptor (unlike Django's DeferredAttribute), so that reads always pass __get__.
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A text field stored encrypted (Fernet); the empty string is stored as is.

    Serialisation (``dumpdata``) writes the ciphertext too, and ``loaddata`` decrypts it back, so fixtures
    and backups made that way never hold a plain token. Ciphertext that no configured key decrypts (from
    the database or a fixture) is kept unchanged as :class:`crypto.Undecryptable`, never taken for a token.
    """

    descriptor_class = EncryptedAttribute

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return crypto.decrypt_or_keep(value)

    def raw_value(self, obj: models.Model) -> Any:
        """The attribute as stored on the instance, without the check :class:`EncryptedAttribute` makes."""
        return obj.__dict__.get(self.attname)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        return self.raw_value(model_instance)

    def value_from_object(self, obj: models.Model) -> Any:
        return self.raw_value(obj)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, crypto.Undecryptable):
            return str.__str__(value)  # the ciphertext as it was read: written back unchanged
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        if isinstance(value, crypto.Undecryptable):
            return str.__str__(value)
        return crypto.encrypt(value) if value else ""

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if isinstance(value, str) and not isinstance(value, crypto.Undecryptable):
            if value.startswith(_FERNET_PREFIX):
                # loaddata: ciphertext made under another key stays ciphertext, marked as unreadable.
                return crypto.decrypt_or_keep(value)
        return value


def unreadable_fields(instance: models.Model) -> list[str]:
    """Names of the encrypted fields of ``instance`` that the configured keys cannot decrypt."""
    return [
        field.name
        for field in instance._meta.concrete_fields
        if isinstance(field, EncryptedTextField) and not crypto.is_readable(field.raw_value(instance))
    ]


def is_set(instance: models.Model, name: str) -> bool:
    """True if the encrypted field ``name`` holds a token, readable or not (never raises for such a field)."""
    field = instance._meta.get_field(name)
    if not isinstance(field, EncryptedTextField):
        raise TypeError(f"{type(instance).__name__}.{name} is not an encrypted field.")
    return bool(field.raw_value(instance))
