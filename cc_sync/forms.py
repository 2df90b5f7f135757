"""The public signup form."""

from __future__ import annotations

import unicodedata
from functools import partial
from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from .conf import app_settings
from .models import EMAIL_MAX_LENGTH, Signup
from .validators import validate_address_part, validate_custom_field_value

#: Form field names that make up sign_up_form's ``street_address``.
ADDRESS_FIELDS = ("street", "city", "state", "postal_code", "country")


class CompatibilityEmailField(forms.EmailField):
    """An email field that reads compatibility forms (full-width ``ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ``) as plain text.

    Django's syntax check is ASCII-only before the @; NFKC first, so such an address is accepted and then
    stored (and limited) as the same address as its plain spelling (:func:`cc_sync.validators.normalize_email`).
    """

    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        return unicodedata.normalize("NFKC", text).strip() if text else text


class SignupForm(forms.ModelForm):
    """Email, names and a consent checkbox whose wording comes from ``CC_SYNC["CONSENT_TEXT"]``.

    Subclass it to ask for more: add ``phone_number``, ``job_title`` or ``company_name`` to ``Meta.fields``;
    add fields named in ``CC_SYNC["CUSTOM_FIELDS"]`` for CC custom fields (:meth:`contact_fields`);
    add fields named ``street``, ``city``, ``state``, ``postal_code`` and ``country`` (kind:
    :attr:`address_kind`) for the street address.
    Validation lives on the model (:meth:`cc_sync.models.Signup.clean` and the field validators), so every
    field is checked against CC's own limits however a signup arrives.
    """

    consent = forms.BooleanField(
        required=True, error_messages={"required": _("Please tick the box to sign up.")}
    )
    address_kind = "home"

    class Meta:
        model = Signup
        fields = ["email", "first_name", "last_name"]
        field_classes = {"email": CompatibilityEmailField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["consent"].label = app_settings.CONSENT_TEXT
        self.fields["email"].widget.attrs.update({"autocomplete": "email", "maxlength": EMAIL_MAX_LENGTH})
        for name, hint in (("first_name", "given-name"), ("last_name", "family-name")):
            if name in self.fields:
                self.fields[name].widget.attrs["autocomplete"] = hint
        # A field people never see: bots that fill every input give themselves away.
        self.honeypot_name = app_settings.HONEYPOT_FIELD
        if self.honeypot_name:
            self.fields[self.honeypot_name] = forms.CharField(
                required=False,
                label=_("Leave this empty"),
                widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
            )

    def honeypot_filled(self) -> bool:
        return bool(self.honeypot_name and self.data.get(self.honeypot_name))

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # Custom fields and address parts are checked here, so an error shows next to its own input;
        # enqueue_signup checks them again on the model.
        custom = app_settings.CUSTOM_FIELDS
        for name, value in list(cleaned.items()):
            validator = None
            if name in custom:
                validator = validate_custom_field_value
            elif name in ADDRESS_FIELDS:
                validator = partial(validate_address_part, name)
            if validator and value not in ("", None):
                try:
                    validator(str(value))
                except forms.ValidationError as err:
                    self.add_error(name, err)
        return cleaned

    def _field_values(self) -> dict[str, str]:
        """Values of the fields named in ``CUSTOM_FIELDS``, by field name (mapped to CC ids when sent)."""
        mapping = app_settings.CUSTOM_FIELDS
        return {
            name: str(value)
            for name, value in self.cleaned_data.items()
            if name in mapping and value not in ("", None)
        }

    def _street_address(self) -> dict[str, str] | None:
        parts = {name: self.cleaned_data[name] for name in ADDRESS_FIELDS if self.cleaned_data.get(name)}
        return {"kind": self.address_kind, **parts} if parts else None

    def validated_fields(self) -> list[str]:
        """The ``Signup`` fields that :meth:`is_valid` checked with the model's own validators.

        :func:`cc_sync.sync.enqueue_signup` does not check them a second time (``validated_fields``).
        """
        return [name for name in self._meta.fields or () if name in self.fields]

    def contact_fields(self) -> dict[str, Any]:
        """The cleaned contact fields, as :func:`cc_sync.sync.enqueue_signup` takes them."""
        names = self._meta.fields
        if names is None:
            # Meta.exclude or "__all__" leaves Django's fields as None, and would hand enqueue_signup model
            # fields it does not take (status, contact_id ...): the contact fields must be named.
            raise ImproperlyConfigured(
                f"{type(self).__name__}.Meta.fields must name the contact fields the form asks for."
            )
        fields = {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}
        # By form field name: the custom field ids are read from CUSTOM_FIELDS when the signup is sent, so
        # fixing a wrong id in the settings and retrying works.
        fields["field_values"] = self._field_values()
        fields["street_address"] = self._street_address()
        return fields
