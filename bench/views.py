"""The two baselines the visitor-latency benchmark compares cc_sync's signup view with (never in the package).

* :class:`PlainSignupView` saves the same fields to the same table and does nothing else: no sync at all.
* :class:`SynchronousSignupView` is the way without a queue: save, then create the contact at CC
  (``POST /contacts``, cc_sync's one request for a new address) inside the visitor's request with
  ``requests`` and answer only when CC has answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.generic import FormView

from cc_sync import oauth
from cc_sync.conf import get_setting
from cc_sync.models import Signup
from cc_sync.sync import default_list_ids

THANKS_URL = "/register/done/"


class PlainSignupForm(forms.ModelForm):
    """The fields of cc_sync's form (email, names, consent), as a plain ModelForm."""

    consent = forms.BooleanField(required=True)

    class Meta:
        model = Signup
        fields = ["email", "first_name", "last_name"]


class PlainSignupView(FormView):
    """Baseline (a): validate and save the row; nothing is ever sent anywhere."""

    form_class = PlainSignupForm
    template_name = "cc_sync/signup_form.html"
    success_url = THANKS_URL

    def form_valid(self, form: PlainSignupForm) -> HttpResponse:
        form.save()
        return HttpResponseRedirect(self.get_success_url())


class SynchronousSignupView(PlainSignupView):
    """Baseline (b): save, then ``POST /contacts`` to CC before answering the visitor."""

    def form_valid(self, form: PlainSignupForm) -> HttpResponse:
        signup = form.save()
        # The body cc_sync's worker sends for a new address (cc_sync.sync.create_body_for).
        payload: dict[str, Any] = {
            "email_address": {"address": signup.email, "permission_to_send": "explicit"},
            "create_source": "Contact",
            "list_memberships": default_list_ids(),
        }
        payload.update(
            {name: getattr(signup, name) for name in ("first_name", "last_name") if getattr(signup, name)}
        )
        response = requests.post(
            get_setting("API_URL").rstrip("/") + "/contacts",
            json=payload,
            headers={"Authorization": f"Bearer {oauth.get_access_token()}"},
            timeout=(5, 20),
        )
        if response.status_code != 201:
            return HttpResponse("Constant Contact did not take the signup.", status=502)
        Signup.objects.filter(pk=signup.pk).update(
            status=Signup.Status.SYNCED, contact_id=response.json()["contact_id"]
        )
        return HttpResponseRedirect(self.get_success_url())


def forwarded_for(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Middleware: the client address from ``X-Forwarded-For`` (the benchmark's proxy stand-in)."""

    def middleware(request: HttpRequest) -> HttpResponse:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            request.META["REMOTE_ADDR"] = forwarded.split(",")[0].strip()
        return get_response(request)

    return middleware


def thanks(request: Any) -> HttpResponse:
    return HttpResponse("Thank you.")
