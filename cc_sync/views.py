"""The public signup form and its thank-you page."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.views.generic import FormView, TemplateView

from .forms import SignupForm
from .sync import enqueue_signup


class SignupView(FormView):
    """Save the signup and answer at once; CC is contacted later by a worker, never on this request."""

    form_class = SignupForm
    template_name = "cc_sync/signup_form.html"
    success_url = reverse_lazy("cc_sync:thanks")
    #: Lists for signups from this view; ``None`` means the default lists.
    list_ids: list[str] | None = None

    def get_list_ids(self, form: SignupForm) -> list[str] | None:
        """Override to choose the lists per submission."""
        return self.list_ids

    def form_valid(self, form: SignupForm) -> HttpResponse:
        enqueue_signup(
            **form.contact_fields(),
            list_ids=self.get_list_ids(form),
            source_url=self.request.build_absolute_uri(),
        )
        return HttpResponseRedirect(self.get_success_url())


class ThanksView(TemplateView):
    template_name = "cc_sync/signup_thanks.html"
