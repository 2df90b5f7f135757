"""The admin: the Constant Contact connection page (connect, reconnect, refresh, disconnect, lists) and signups."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from . import oauth, status, sync
from .conf import get_setting
from .exceptions import AuthorizationFailed, CCSyncError
from .models import BackfillBatch, BackfillRun, Connection, Signup, Suppression

logger = logging.getLogger("cc_sync.admin")


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """One page for the one connection; every action needs the change permission and POST + CSRF."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}_"
        own = [
            ("connect", self.connect_view),
            ("callback", self.callback_view),
            ("refresh", self.refresh_view),
            ("disconnect", self.disconnect_view),
            ("lists", self.lists_view),
        ]
        return [
            path(f"{name}/", self.admin_site.admin_view(view), name=prefix + name) for name, view in own
        ] + super().get_urls()

    def _require_change_permission(self, request: HttpRequest) -> None:
        if not self.has_change_permission(request):
            raise PermissionDenied

    def _page(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))

    def redirect_uri(self, request: HttpRequest) -> str:
        """``REDIRECT_URI`` if set, else this admin's callback URL (register it at CC exactly)."""
        callback = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_callback")
        return get_setting("REDIRECT_URI") or request.build_absolute_uri(callback)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        snapshot = status.report()
        connection = snapshot.connection
        chosen = set(snapshot.list_ids)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Constant Contact connection"),
            "connection": connection,
            "report": snapshot,
            "can_change": self.has_change_permission(request),
            "redirect_uri": self.redirect_uri(request),
            "lists": [{**item, "chosen": item["list_id"] in chosen} for item in connection.available_lists],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/cc_sync/connection/connection.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return self._page()

    @method_decorator(require_POST)
    def connect_view(self, request: HttpRequest) -> HttpResponse:
        """Start the authorization-code flow (also used to reconnect)."""
        self._require_change_permission(request)
        try:
            url, record = oauth.authorization_request(self.redirect_uri(request))
        except CCSyncError as err:
            messages.error(request, str(err))
            return self._page()
        except Exception as err:  # configuration errors: say so on the page instead of a 500
            messages.error(request, _("Constant Contact is not configured: %(error)s") % {"error": err})
            return self._page()
        oauth.remember_state(request.session, record)
        return HttpResponseRedirect(url)

    @method_decorator(sensitive_variables())
    def callback_view(self, request: HttpRequest) -> HttpResponse:
        """Where CC sends the admin back with ``code`` and ``state`` (or ``error``)."""
        self._require_change_permission(request)
        try:
            connection = oauth.complete_authorization(request.session, request.GET, user=request.user)
        except AuthorizationFailed as err:
            messages.error(request, str(err))
        except Exception as err:
            # Never a 500 here: Django's error report would carry the query string, with the code in it.
            logger.error("Connecting to Constant Contact failed unexpectedly (%s).", type(err).__name__)
            messages.error(request, _("Connecting failed unexpectedly; nothing was stored. Try again."))
        else:
            messages.success(
                request,
                _("Connected to Constant Contact account %(name)s.")
                % {"name": connection.account_name or "?"},
            )
        return self._page()

    @method_decorator(require_POST)
    def refresh_view(self, request: HttpRequest) -> HttpResponse:
        """Refresh the access token now."""
        self._require_change_permission(request)
        try:
            oauth.refresh_now()
            oauth.refresh_lists(Connection.load())
        except CCSyncError as err:
            messages.error(request, _("Refreshing failed: %(error)s") % {"error": err})
        else:
            messages.success(request, _("The access token and the lists were refreshed."))
        return self._page()

    @method_decorator(require_POST)
    def disconnect_view(self, request: HttpRequest) -> HttpResponse:
        """Forget the tokens; new signups are held until the next connect."""
        self._require_change_permission(request)
        oauth.disconnect()
        messages.success(request, _("Disconnected. New signups are kept and sent after the next connect."))
        return self._page()

    @method_decorator(require_POST)
    def lists_view(self, request: HttpRequest) -> HttpResponse:
        """Save the default lists chosen among the account's lists."""
        self._require_change_permission(request)
        connection = Connection.load()
        known = connection.list_names()
        chosen = [list_id for list_id in request.POST.getlist("list_ids") if list_id in known]
        if not chosen:
            messages.error(request, _("Choose at least one list."))
            return self._page()
        Connection.objects.filter(pk=connection.pk).update(list_ids=chosen)
        if connection.status == Connection.Status.CONNECTED:
            sync.release_held_signups()
        messages.success(
            request, _("Signups now go to: %(names)s.") % {"names": ", ".join(known[i] for i in chosen)}
        )
        return self._page()


@admin.register(Signup)
class SignupAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "status",
        "list_display_lists",
        "attempts",
        "last_error_short",
        "contact_id",
        "created_at",
        "synced_at",
        "next_attempt_at",
    )
    list_filter = ("status", "created_at", "synced_at")
    search_fields = ("email",)
    date_hierarchy = "created_at"
    actions = ("retry_now", "mark_failed")
    readonly_fields = [field.name for field in Signup._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        names = Connection.load().list_names()  # one query for the page, not one per row
        for signup in changelist.result_list:
            signup.list_names = ", ".join(names.get(list_id, list_id) for list_id in signup.list_ids)
        return changelist

    @admin.display(description=gettext_lazy("lists"))
    def list_display_lists(self, obj: Signup) -> str:
        return getattr(obj, "list_names", ", ".join(obj.list_ids))

    @admin.display(description=gettext_lazy("last error"))
    def last_error_short(self, obj: Signup) -> str:
        return obj.last_error[:120]

    @admin.action(description=gettext_lazy("Retry now"), permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Signup]) -> None:
        count = sync.retry_now(queryset)
        self.message_user(request, _("%(count)d signups queued again.") % {"count": count}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Mark as failed"), permissions=["change"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Signup]) -> None:
        count = sync.mark_failed(queryset, _("Marked as failed by %(user)s.") % {"user": request.user})
        self.message_user(
            request, _("%(count)d signups marked as failed.") % {"count": count}, messages.SUCCESS
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by cc_sync itself: shown, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    """Entries are added by ``cc_sync_erase`` or :func:`cc_sync.privacy.suppress`."""

    list_display = ("email_hash", "reason", "created_at")
    list_filter = ("reason",)
    readonly_fields = ("email_hash", "reason", "created_at")


class BackfillBatchInline(admin.TabularInline):
    model = BackfillBatch
    fields = ("number", "status", "activity_id", "state", "percent_done", "contact_count", "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description=gettext_lazy("contacts"))
    def contact_count(self, batch: BackfillBatch) -> int:
        return len(batch.rows)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BackfillRun)
class BackfillRunAdmin(ReadOnlyAdmin):
    """Runs of ``manage.py cc_sync_backfill`` and their CC activities; the command resumes unfinished ones."""

    list_display = ("__str__", "status", "contacts", "invalid", "skipped", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = (
        "source",
        "status",
        "list_ids",
        "rows",
        "contacts",
        "invalid",
        "skipped",
        "created_at",
        "finished_at",
    )
    exclude = ("fingerprint",)
    inlines = [BackfillBatchInline]
