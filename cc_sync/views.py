"""The public signup form and its thank-you page."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.generic import FormView, TemplateView

from . import confirmation, defences, privacy
from .conf import app_settings
from .forms import SignupForm
from .models import Connection, Signup
from .sync import enqueue_signup

logger = logging.getLogger("cc_sync.views")


class SignupView(FormView):
    """Save the signup and answer at once; CC is contacted later by a worker, never on this request.

    Bots get the normal thank-you and nothing is stored (honeypot, per-email limit, suppressed email);
    too many submissions from one address get 429; bodies over ``MAX_REQUEST_BYTES`` get 413.
    """

    form_class = SignupForm
    template_name = "cc_sync/signup_form.html"
    success_url = reverse_lazy("cc_sync:thanks")
    #: Lists for signups from this view; ``None`` means ``LIST_CHOOSER`` or the default lists.
    list_ids: list[str] | None = None
    #: The connection (its slug) whose CC account gets this view's signups; ``None`` means
    #: ``CC_SYNC["CONNECTION_CHOOSER"]``, else the default connection.
    connection: str | None = None
    #: True for a view behind login whose submitter *is* the person: only then may existing contact details at
    #: CC be updated (anonymous submissions only add an existing contact to lists).
    verified: bool = False

    def get_client_ip(self) -> str:
        """The visitor's address; behind a proxy, fix ``REMOTE_ADDR`` in a middleware first."""
        return self.request.META.get("REMOTE_ADDR", "")

    def get_list_ids(self, form: SignupForm) -> list[str] | None:
        """The lists for this submission: :attr:`list_ids`, else ``CC_SYNC["LIST_CHOOSER"]``, else the default."""
        if self.list_ids:
            return self.list_ids
        chooser = app_settings.LIST_CHOOSER
        return import_string(chooser)(self.request, form.cleaned_data) if chooser else None

    def get_connection(self) -> Connection | str | None:
        """The connection for this submission: :attr:`connection`, else ``CC_SYNC["CONNECTION_CHOOSER"]``,
        else ``None`` (the default connection)."""
        if self.connection:
            return self.connection
        chooser = app_settings.CONNECTION_CHOOSER
        return import_string(chooser)(self.request) if chooser else None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(captcha=defences.captcha_config(), **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > app_settings.MAX_REQUEST_BYTES:
            return HttpResponse(_("The form data is too large."), status=413, content_type="text/plain")
        form = self.get_form()
        valid = form.is_valid()
        ip_limit = app_settings.LIMIT_PER_IP
        checks = [("ip", defences.ip_limit_key(self.get_client_ip()), ip_limit)]
        # Without a CAPTCHA to verify in between, the email's allowance is counted in the same cache round
        # trip as the address's (given back below if the address is over its limit).
        self._email_counted: tuple[tuple[str, str, Any], bool] | None = None
        if valid and not form.honeypot_filled() and not app_settings.CAPTCHA:
            checks.append(self._email_check(form))
        within = defences.within_limits(*checks)
        if len(checks) > 1:
            self._email_counted = (checks[1], within[1])
        if not within[0]:
            if self._email_counted:
                defences.release(*self._email_counted[0])
            response = self.render_to_response(self.get_context_data(limited=True, form=form), status=429)
            response["Retry-After"] = str(ip_limit[1] if ip_limit else 0)
            return response
        return self.form_valid(form) if valid else self.form_invalid(form)

    def _email_check(self, form: SignupForm) -> tuple[str, str, Any]:
        # Keyed as stored (canonical form), so no spelling of one address gets another allowance.
        return ("email", privacy.email_hash(form.cleaned_data["email"]), app_settings.LIMIT_PER_EMAIL)

    def form_valid(self, form: SignupForm) -> HttpResponse:
        if form.honeypot_filled():
            return HttpResponseRedirect(self.get_success_url())
        if not defences.verify_captcha(self.request, self.get_client_ip()):
            form.add_error(None, _("Please complete the check that you are not a robot, then submit again."))
            return self.form_invalid(form)
        counted = getattr(self, "_email_counted", None)
        email_check, within = counted or (self._email_check(form), None)
        if within is None:
            within = defences.within_limit(*email_check)
        if within:
            try:
                enqueue_signup(
                    **form.contact_fields(),
                    list_ids=self.get_list_ids(form),
                    verified=self.verified,
                    source_url=self.request.build_absolute_uri(),
                    client_ip=self.get_client_ip(),
                    user_agent=self.request.META.get("HTTP_USER_AGENT", ""),
                    validated_fields=form.validated_fields(),
                    connection=self.get_connection(),
                )
            except ValidationError as err:
                defences.release(*email_check)
                if "connection" not in getattr(err, "error_dict", {}):
                    raise
                # The site names a connection that does not exist: a configuration error, not the visitor's.
                # Nothing was stored, so the visitor is told so rather than thanked.
                logger.error(
                    "Signup form %s: %s", self.request.path, "; ".join(err.message_dict["connection"])
                )
                form.add_error(None, _("Signups cannot be taken right now. Please try again later."))
                return self.render_to_response(self.get_context_data(form=form), status=503)
            except Exception:
                # Nothing was stored (a database error, say): the visitor gets the error, and their
                # retry must not be thanked with nothing saved.
                defences.release(*email_check)
                raise
        return HttpResponseRedirect(self.get_success_url())


class ThanksView(TemplateView):
    template_name = "cc_sync/signup_thanks.html"


@method_decorator(never_cache, name="dispatch")
class ConfirmView(TemplateView):
    """The page the confirmation email links to: shows a button on GET, confirms on POST only.

    Mail scanners and link previews fetch links with GET; a confirmation must be the person's own click.
    """

    template_name = "cc_sync/confirm.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            signup = confirmation.signup_for(token)
        except confirmation.InvalidLink:
            return self.render_to_response({"state": "invalid"}, status=400)
        waiting = signup.status == Signup.Status.AWAITING_CONFIRMATION
        return self.render_to_response({"state": "ask" if waiting else "done", "signup": signup})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            signup = confirmation.signup_for(token)
        except confirmation.InvalidLink:
            return self.render_to_response({"state": "invalid"}, status=400)
        state = "confirmed" if confirmation.confirm(signup) else "done"
        return self.render_to_response({"state": state, "signup": signup})
