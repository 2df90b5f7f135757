"""The public signup form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .conf import get_setting
from .models import EMAIL_MAX_LENGTH, Signup


class SignupForm(forms.ModelForm):
    """Email, names and a consent checkbox whose wording comes from ``CC_SYNC["CONSENT_TEXT"]``.

    Subclass it and extend ``Meta.fields`` with ``phone_number``, ``job_title`` or ``company_name`` to ask
    for more. Validation lives on the model (:meth:`cc_sync.models.Signup.clean` and the field validators),
    so every field is checked against CC's own limits however a signup arrives.
    """

    consent = forms.BooleanField(
        required=True, error_messages={"required": _("Please tick the box to sign up.")}
    )

    class Meta:
        model = Signup
        fields = ["email", "first_name", "last_name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["consent"].label = get_setting("CONSENT_TEXT")
        self.fields["email"].widget.attrs.update({"autocomplete": "email", "maxlength": EMAIL_MAX_LENGTH})
        for name in ("first_name", "last_name"):
            if name in self.fields:
                self.fields[name].widget.attrs["autocomplete"] = {
                    "first_name": "given-name",
                    "last_name": "family-name",
                }[name]

    def contact_fields(self) -> dict[str, Any]:
        """The cleaned contact fields, as :func:`cc_sync.sync.enqueue_signup` takes them."""
        return {name: self.cleaned_data[name] for name in self._meta.fields if name in self.cleaned_data}
