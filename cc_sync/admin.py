"""The admin: the Constant Contact connection page (connect, reconnect, refresh, disconnect, lists) and signups."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import wraps
from types import SimpleNamespace
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, ProtectedError, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from . import fields, oauth, status, sync
from .client import get_client
from .conf import app_settings
from .exceptions import AuthorizationFailed, CCSyncError, ReconnectRequired
from .fields import unreadable_fields
from .models import (
    BackfillBatch,
    BackfillRun,
    Connection,
    Signup,
    Suppression,
    SuppressionLift,
    SurgeBatch,
)
from .validators import validate_list_ids

logger = logging.getLogger("cc_sync.admin")

#: The session key of a device flow started from the admin (its device code is good for minutes, not more).
DEVICE_SESSION_KEY = "cc_sync_device_flow"


class TokenViewReporterFilter(SafeExceptionReporterFilter):
    """Hides sensitive variables even with ``DEBUG`` on: Django's own filter only works with it off."""

    def is_active(self, request: HttpRequest | None) -> bool:
        return True


def handles_tokens(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For an admin view that handles tokens, codes or verifiers: keep them out of error pages and mails.

    Every local variable of the view and of whatever it calls (the token refresh, the list fetch) is
    replaced by stars in Django's debug page and error reports, with ``DEBUG`` on too, and so are the POST
    parameters (``sensitive_variables`` and ``sensitive_post_parameters``, set on the request).
    """
    hidden = sensitive_variables()(view)

    @wraps(view)
    def wrapper(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request.exception_reporter_filter = TokenViewReporterFilter()
        # What Django's sensitive_post_parameters decorator sets; HttpRequest's stubs do not declare it.
        request.sensitive_post_parameters = "__ALL__"  # type: ignore[attr-defined]
        return hidden(self, request, *args, **kwargs)

    return wrapper


#: Signups of a connection that are not finished: pending (or being sent), or held (see Signup.HELD_STATUSES).
PENDING_STATUSES = (Signup.Status.PENDING, Signup.Status.SYNCING)
#: With more connections than this needing attention, the admin's banner counts them without naming them.
NAMED_IN_BANNER = 3


def signup_counts() -> dict[int, dict[str, int]]:
    """``{connection pk: {"pending", "held"}}`` of every connection's unfinished signups, in one query.

    Signups naming no connection are the default connection's (:meth:`Connection.signups`).
    """
    rows = (
        Signup.objects.order_by()
        .values_list("connection_id")
        .annotate(
            pending=Count("pk", filter=Q(status__in=PENDING_STATUSES)),
            held=Count("pk", filter=Q(status__in=Signup.HELD_STATUSES)),
        )
    )
    counts: dict[int, dict[str, int]] = {}
    for pk, pending, held in rows:
        if pk is None:
            pk = Connection.objects.filter(slug=Connection.DEFAULT_SLUG).values_list("pk", flat=True).first()
            if pk is None:
                continue
        total = counts.setdefault(pk, {"pending": 0, "held": 0})
        total["pending"] += pending
        total["held"] += held
    return counts


def attention(connection: Connection, counts: dict[str, int] | None = None) -> str:
    """What ``connection`` needs from an admin, in a few words ("" when nothing).

    Unreadable tokens, a grant CC refused, a disconnection while signups wait for it, or no list to send to.
    """
    counts = counts or {}
    if unreadable_fields(connection):
        return _("stored tokens cannot be read")
    if connection.status == Connection.Status.NEEDS_RECONNECT:
        return _("needs reconnecting")
    waiting = counts.get("pending", 0) + counts.get("held", 0)
    if connection.status == Connection.Status.DISCONNECTED:
        if not waiting:
            return ""
        return ngettext(
            "disconnected, %(count)d signup waiting", "disconnected, %(count)d signups waiting", waiting
        ) % {"count": waiting}
    if not sync.default_list_ids(connection):
        return _("no list chosen")
    return ""


class ConnectionForm(forms.ModelForm):
    """Adding or editing a connection. The client secret is write-only: never rendered, kept when left empty."""

    client_secret = forms.CharField(
        label=gettext_lazy("Own application's client secret"),
        help_text=gettext_lazy("Stored encrypted and never shown again."),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = Connection
        fields = ("name", "slug", "client_id", "client_secret", "site_domain")
        help_texts = {
            "client_id": gettext_lazy(
                "Empty: the application of CC_SYNC['CLIENT_ID']. Set: this connection's own Constant "
                "Contact application (its own rate limits)."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored secret (model_to_dict put it here) is never sent back to the browser.
        self.initial.pop("client_secret", None)
        if not self.instance.pk:
            self.initial["name"] = ""  # the model's default names the first connection, not another
        if self.instance.pk and fields.is_set(self.instance, "client_secret"):
            self.fields["client_secret"].help_text = _(
                "A secret is stored (never shown). Leave empty to keep it; type a new one to replace it."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if not cleaned.get("client_id"):
            cleaned["client_secret"] = ""  # the settings' application: no secret of its own
        elif not cleaned.get("client_secret") and self.instance.pk:
            # Left empty: keep the stored one as stored (read or not with the configured keys).
            cleaned["client_secret"] = Connection._meta.get_field("client_secret").raw_value(self.instance)
        return cleaned


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """The Constant Contact connections: with one, its page is the change list (as before there were
    several); with more, the change list lists them and each has a page of its own (``<pk>/``).

    The default connection's actions keep their URLs (``connect/``, ``refresh/``...); another connection's
    are under its primary key (``<pk>/connect/``...). The OAuth callback is one URL for all: the state
    record says which connection is being connected. Every action needs the change permission and POST +
    CSRF.
    """

    form = ConnectionForm
    actions = None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_default:
            return False  # where signups naming no connection go
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Code and settings name the default connection by its slug.
        return ("slug",) if obj is not None and obj.is_default else ()

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Sequence[str]]:
        return {} if obj is not None and obj.is_default else {"slug": ("name",)}

    def get_urls(self) -> list[Any]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}_"
        actions = [
            ("connect", self.connect_view),
            ("refresh", self.refresh_view),
            ("disconnect", self.disconnect_view),
            ("lists", self.lists_view),
            ("device", self.device_view),
        ]
        wrap = self.admin_site.admin_view
        # One name per action: without arguments the default connection's URL, with a pk another's.
        default = [path(f"{name}/", wrap(view), name=prefix + name) for name, view in actions]
        by_pk = [path(f"<int:pk>/{name}/", wrap(view), name=prefix + name) for name, view in actions]
        return [
            path("callback/", wrap(self.callback_view), name=prefix + "callback"),
            *default,
            path("<int:pk>/", wrap(self.page_view), name=prefix + "page"),
            *by_pk,
            *super().get_urls(),
        ]

    # -- where things are ----------------------------------------------------------------------------

    def _name(self, action: str) -> str:
        return f"admin:{self.opts.app_label}_{self.opts.model_name}_{action}"

    def _url(self, action: str, connection: Connection) -> str:
        """The URL of ``action`` for ``connection`` (the default connection's without a pk, as always)."""
        return (
            reverse(self._name(action))
            if connection.is_default
            else reverse(self._name(action), args=[connection.pk])
        )

    def _page_url(self, connection: Connection | None = None) -> str:
        """The connection's page: the change list while it is the only connection, else its own page."""
        if connection is None or Connection.objects.count() <= 1:
            return reverse(self._name("changelist"))
        return reverse(self._name("page"), args=[connection.pk])

    def _page(self, connection: Connection | None = None) -> HttpResponseRedirect:
        return HttpResponseRedirect(self._page_url(connection))

    def _connection(self, request: HttpRequest, pk: int | None, change: bool = True) -> Connection:
        """The connection of an action's URL (the default one without a pk); 404 or 403 as the admin does."""
        if pk is None:
            connection = Connection.load()
        else:
            try:
                connection = Connection.objects.get(pk=pk)
            except Connection.DoesNotExist:
                raise Http404(_("No such Constant Contact connection.")) from None
        allowed = (
            self.has_change_permission(request, connection)
            if change
            else self.has_view_or_change_permission(request, connection)
        )
        if not allowed:
            raise PermissionDenied
        return connection

    def redirect_uri(self, request: HttpRequest) -> str:
        """``REDIRECT_URI`` if set, else this admin's callback URL (register it at CC exactly)."""
        return app_settings.REDIRECT_URI or request.build_absolute_uri(reverse(self._name("callback")))

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        """What the admin's own change list template needs to draw the header and the breadcrumbs."""
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "cl": SimpleNamespace(opts=self.opts),
            "media": self.media,
            "title": title,
        }

    # -- the pages -------------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        default = Connection.load()
        connections = list(Connection.objects.order_by("pk"))
        if len(connections) <= 1:
            return self._connection_page(request, default, several=False, extra_context=extra_context)
        counts = signup_counts()
        can_change = self.has_change_permission(request)
        rows = []
        for connection in connections:
            counted = counts.get(connection.pk, {})
            unreadable = bool(unreadable_fields(connection))
            rows.append(
                {
                    "connection": connection,
                    "page": reverse(self._name("page"), args=[connection.pk]),
                    "change": reverse(self._name("change"), args=[connection.pk]),
                    "urls": self._action_urls(connection),
                    "unreadable": unreadable,
                    "pending": counted.get("pending", 0),
                    "held": counted.get("held", 0),
                    "attention": attention(connection, counted),
                }
            )
        context = {
            **self._context(request, _("Constant Contact connections")),
            "rows": rows,
            "can_change": can_change,
            "can_add": self.has_add_permission(request),
            "add_url": reverse(self._name("add")),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/cc_sync/connection/connection_list.html", context)

    def page_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """One connection's page (the change list's page when it is the only connection)."""
        connection = self._connection(request, pk, change=False)
        return self._connection_page(request, connection, several=Connection.objects.count() > 1)

    def _action_urls(self, connection: Connection) -> dict[str, str]:
        return {
            action: self._url(action, connection) for action in ("connect", "refresh", "disconnect", "lists")
        }

    @handles_tokens
    def _connection_page(
        self,
        request: HttpRequest,
        connection: Connection,
        several: bool,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        snapshot = status.report(connection)
        connection = snapshot.connection
        chosen = set(snapshot.list_ids)
        names = connection.list_names()
        device_flow = app_settings.OAUTH_FLOW == "device"
        title = _("Constant Contact connection")
        context = {
            **self._context(request, f"{title}: {connection.name}" if several else title),
            # With several connections the page is drawn as a change form's, whose breadcrumbs lead back to
            # the list; alone, as the change list's (what the page always was).
            "base_template": "admin/change_form.html" if several else "admin/change_list.html",
            "original": connection,
            "has_view_permission": True,
            "several": several,
            "connection": connection,
            "urls": self._action_urls(connection),
            "change_url": reverse(self._name("change"), args=[connection.pk]),
            # The signup list filters by connection once there are several (the default's include unnamed).
            "signups_url": (
                f"{reverse('admin:cc_sync_signup_changelist')}?connection__id__exact={connection.pk}"
                if several and not connection.is_default
                else ""
            ),
            "add_url": reverse(self._name("add")),
            "can_add": self.has_add_permission(request),
            "report": snapshot,
            # The page reads token fields only through these: a token the keys cannot read never raises.
            "tokens_unreadable": bool(snapshot.unreadable_tokens),
            "has_access_token": fields.is_set(connection, "access_token"),
            "has_refresh_token": fields.is_set(connection, "refresh_token"),
            "missing_lists": [
                {"list_id": list_id, "name": names.get(list_id, "")} for list_id in snapshot.missing_list_ids
            ],
            "can_change": self.has_change_permission(request, connection),
            "device_flow": device_flow,
            "redirect_uri": "" if device_flow else self.redirect_uri(request),
            "lists": [{**item, "chosen": item["list_id"] in chosen} for item in connection.available_lists],
            # Connected, and nothing says where signups go yet: the next step, said until it is done.
            "needs_lists": connection.status == Connection.Status.CONNECTED and not snapshot.list_ids,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/cc_sync/connection/connection.html", context)

    # -- adding, editing and deleting ------------------------------------------------------------------

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        if {"_continue", "_addanother", IS_POPUP_VAR} & set(request.POST):
            return super().response_add(request, obj, post_url_continue)
        messages.success(
            request,
            _("The connection %(name)s was added. Connect it to its Constant Contact account.")
            % {"name": obj.name},
        )
        return self._page(obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "client_id" in form.changed_data and obj.status != Connection.Status.DISCONNECTED:
            # Its tokens belong to the application it had: CC refuses them to any other.
            oauth.disconnect(obj)
            messages.warning(
                request,
                _("The application of %(name)s changed, so it was disconnected: connect it again.")
                % {"name": obj.name},
            )

    def _deletion_refused(self, connection: Connection) -> str:
        """Why ``connection`` cannot be deleted yet ("" if it can): its signups name it."""
        S = Signup.Status
        signups = connection.signups()
        waiting = signups.exclude(status__in=[S.SYNCED, S.FAILED]).count()
        if waiting:
            return ngettext(
                "The connection %(name)s cannot be deleted: %(count)d signup is still pending or held for "
                "it. Let it be sent (connect the account) or mark it as failed first.",
                "The connection %(name)s cannot be deleted: %(count)d signups are still pending or held "
                "for it. Let them be sent (connect the account) or mark them as failed first.",
                waiting,
            ) % {"name": connection.name, "count": waiting}
        finished = signups.count()
        if finished:
            return ngettext(
                "The connection %(name)s cannot be deleted: %(count)d synced or failed signup keeps the "
                "record of the account it went to. Keep the connection (disconnected), or delete that "
                "signup first.",
                "The connection %(name)s cannot be deleted: %(count)d synced or failed signups keep the "
                "record of the account they went to. Keep the connection (disconnected), or delete those "
                "signups first.",
                finished,
            ) % {"name": connection.name, "count": finished}
        return ""

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Django's deletion page, refused with a message (never a 500) while signups name the connection."""
        connection = self.get_object(request, unquote(object_id))
        if connection is not None and self.has_delete_permission(request, connection):
            refused = self._deletion_refused(connection)
            if refused:
                messages.error(request, refused)
                return self._page(connection)
        try:
            return super().delete_view(request, object_id, extra_context)
        except ProtectedError:  # a signup arrived between the check and the deletion
            messages.error(request, _("The connection is still used by signups; nothing was deleted."))
            return self._page(connection)

    # -- the actions -----------------------------------------------------------------------------------

    @method_decorator(require_POST)
    @handles_tokens
    def connect_view(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        """Start the authorization-code flow (also used to reconnect), or the device flow for such an app."""
        connection = self._connection(request, pk)
        try:
            if app_settings.OAUTH_FLOW == "device":
                return self._start_device_flow(request, connection)
            url, record = oauth.authorization_request(self.redirect_uri(request), connection)
        except CCSyncError as err:
            messages.error(request, str(err))
            return self._page(connection)
        except Exception as err:  # configuration errors: say so on the page instead of a 500
            messages.error(request, _("Constant Contact is not configured: %(error)s") % {"error": err})
            return self._page(connection)
        oauth.remember_state(request.session, record)
        return HttpResponseRedirect(url)

    # -- the device flow, from the admin (RFC 8628; https://developer.constantcontact.com/api_guide/device_flow.html)

    def _start_device_flow(self, request: HttpRequest, connection: Connection) -> HttpResponse:
        device = oauth.start_device_flow(connection)
        now = time.time()
        request.session[DEVICE_SESSION_KEY] = {
            "connection": connection.pk,
            "device_code": device["device_code"],
            "user_code": str(device.get("user_code") or ""),
            "link": str(device.get("verification_uri_complete") or device.get("verification_uri") or ""),
            "interval": max(1, int(float(device.get("interval") or 5))),
            "expires_at": now + float(device.get("expires_in") or 600),
            "next_poll_at": now + max(1, int(float(device.get("interval") or 5))),
        }
        return HttpResponseRedirect(self._url("device", connection))

    @handles_tokens
    def device_view(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        """GET: the link and the code to approve. POST: check once with CC (never faster than CC asked)."""
        connection = self._connection(request, pk)
        device = request.session.get(DEVICE_SESSION_KEY)
        if not device or device.get("connection", connection.pk) != connection.pk:
            messages.error(request, _("No device connection is under way; click Connect to start one."))
            return self._page(connection)
        if request.method == "POST":
            if request.POST.get("cancel"):
                del request.session[DEVICE_SESSION_KEY]
                messages.info(request, _("Connecting was cancelled; nothing was stored."))
                return self._page(connection)
            outcome = self._poll_device(request, device, connection)
            if outcome is not None:
                return outcome
            return HttpResponseRedirect(request.path)
        context = {
            **self._context(request, _("Connect Constant Contact")),
            "device": device,
            "device_url": self._url("device", connection),
            "expires": datetime.fromtimestamp(device["expires_at"], tz=dt_timezone.utc),
        }
        return TemplateResponse(request, "admin/cc_sync/connection/device.html", context)

    def _poll_device(
        self, request: HttpRequest, device: dict[str, Any], connection: Connection
    ) -> HttpResponse | None:
        """One poll of CC's token endpoint; a response when the flow ended, None while it waits."""
        now = time.time()
        if now >= device["expires_at"]:
            del request.session[DEVICE_SESSION_KEY]
            messages.error(
                request, _("Nobody approved the code in time; nothing was stored. Click Connect again.")
            )
            return self._page(connection)
        if now < device["next_poll_at"]:  # an impatient click: CC would answer slow_down
            return None
        failed = ""
        try:
            tokens = get_client(connection.application()).poll_device_token(device["device_code"])
        except ReconnectRequired as err:
            failed = str(err)
        except CCSyncError as err:
            if err.error_key in ("authorization_pending", "slow_down") or getattr(err, "retry_after", None):
                if err.error_key == "slow_down":
                    device["interval"] += 5  # RFC 8628 section 3.5
                device["next_poll_at"] = now + device["interval"]
                request.session[DEVICE_SESSION_KEY] = device
                return None
            failed = err.error_key if err.error_key in ("access_denied", "expired_token") else str(err)
        else:
            del request.session[DEVICE_SESSION_KEY]
            connection = oauth.store_grant(tokens, user=request.user, connection=connection)
            messages.success(
                request,
                _("Connected to Constant Contact account %(name)s.")
                % {"name": connection.account_name or "?"},
            )
            return self._page(connection)
        del request.session[DEVICE_SESSION_KEY]
        messages.error(
            request, _("The device authorization ended (%(error)s); nothing was stored.") % {"error": failed}
        )
        return self._page(connection)

    @handles_tokens
    def callback_view(self, request: HttpRequest) -> HttpResponse:
        """Where CC sends the admin back with ``code`` and ``state`` (or ``error``), for any connection."""
        if not self.has_change_permission(request):
            raise PermissionDenied
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
            return self._page(connection)
        return self._page()

    @method_decorator(require_POST)
    @handles_tokens
    def refresh_view(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        """Refresh the connection's access token now, and fetch its lists with the new one."""
        connection = self._connection(request, pk)
        try:
            access_token = oauth.refresh_now(connection)
            oauth.refresh_lists(connection, access_token)
        except CCSyncError as err:
            messages.error(request, _("Refreshing failed: %(error)s") % {"error": err})
        else:
            messages.success(request, _("The access token and the lists were refreshed."))
        return self._page(connection)

    @method_decorator(require_POST)
    @handles_tokens
    def disconnect_view(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        """Forget the connection's tokens; its new signups are held until the next connect."""
        connection = self._connection(request, pk)
        oauth.disconnect(connection)
        messages.success(request, _("Disconnected. New signups are kept and sent after the next connect."))
        return self._page(connection)

    @method_decorator(require_POST)
    @handles_tokens
    def lists_view(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        """Save the connection's default lists, chosen among its account's lists; release signups held for
        a list."""
        connection = self._connection(request, pk)
        known = connection.list_names()
        chosen = list(dict.fromkeys(i for i in request.POST.getlist("list_ids") if i in known))
        try:
            # CC's list_memberships: 1 to 50 UUIDs; any other choice would be refused for every signup.
            validate_list_ids(chosen)
        except ValidationError as err:
            messages.error(request, " ".join(err.messages) + " " + _("Nothing was saved."))
            return self._page(connection)
        # A new choice replaces the lists CC said were gone: signups held for them go to the new lists.
        Connection.objects.filter(pk=connection.pk).update(list_ids=chosen, missing_list_ids=[])
        connection.list_ids, connection.missing_list_ids = chosen, []
        if connection.status == Connection.Status.CONNECTED:
            sync.release_held_signups(connection)
        messages.success(
            request, _("Signups now go to: %(names)s.") % {"names": ", ".join(known[i] for i in chosen)}
        )
        return self._page(connection)


#: Statuses in which a worker is due to try again; any other row has no next attempt worth showing.
SCHEDULED_STATUSES = (Signup.Status.PENDING, Signup.Status.SYNCING)
#: Scheduling fields that mean nothing once a row is synced or failed.
SCHEDULING_FIELDS = ("next_attempt_at", "lease_expires_at", "enqueued_at", "deadline_at")


@admin.register(Signup)
class SignupAdmin(admin.ModelAdmin):
    """The outbox, read-only: rows are written by cc_sync; the actions re-queue or give up on them.

    The change list keeps to the columns that tell what happened (it fits a 1280 px screen with the
    filters and the navigation sidebar); the detail page shows everything, without save buttons.
    """

    # Five columns, dates short, the last error under the status: the list fits beside the filters and the
    # navigation sidebar on a 1280 px screen with any Django version (the detail page has every field).
    list_display = (
        "email",
        "status_and_error",
        "list_display_lists",
        "submitted",
        "synced_or_next_attempt",
    )
    # The status filter offers every status, the holds included (waiting for a list, awaiting confirmation).
    list_filter = ("status", "verified", "created_at", "synced_at")
    search_fields = ("email",)
    date_hierarchy = "created_at"
    actions = ("retry_now", "mark_failed")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list's actions need the change permission; a single row is only ever shown (saving a form of
        # read-only fields would write the row back over a worker's update).
        return obj is None and super().has_change_permission(request)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = ["lists_by_name" if f.name == "list_ids" else f.name for f in Signup._meta.fields]
        fields.remove("id")
        if obj is not None and obj.status not in SCHEDULED_STATUSES:
            fields = [name for name in fields if name not in SCHEDULING_FIELDS]
        return tuple(fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.get_fields(request, obj)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # Which account a signup goes to matters once there are several.
        several = Connection.objects.count() > 1
        return (*self.list_filter, "connection") if several else self.list_filter

    @staticmethod
    def _all_list_names() -> dict[str, str]:
        """``{list_id: name}`` of every connection's lists (list ids are UUIDs: no two accounts share one)."""
        names: dict[str, str] = {}
        for lists in Connection.objects.order_by("-pk").values_list("available_lists", flat=True):
            names.update({item["list_id"]: item["name"] for item in lists or []})
        return names

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        names = self._all_list_names()  # one query for the page, not one per row
        for signup in changelist.result_list:
            signup.list_names = self._names(signup, names)
        return changelist

    @staticmethod
    def _names(signup: Signup, names: dict[str, str]) -> str:
        if not signup.list_ids:
            return _("(the default lists)")
        return ", ".join(names.get(list_id, list_id) for list_id in signup.list_ids)

    @admin.display(description=gettext_lazy("lists"))
    def list_display_lists(self, obj: Signup) -> str:
        return getattr(obj, "list_names", None) or self._names(obj, self._all_list_names())

    @admin.display(description=gettext_lazy("lists"))
    def lists_by_name(self, obj: Signup) -> str:
        """The lists by the names the account gives them (the id where the list is unknown)."""
        return self._names(obj, self._all_list_names())

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_and_error(self, obj: Signup) -> str:
        """The status, and under it the start of the last error (what a failed or retried row needs)."""
        if not obj.last_error or obj.status == Signup.Status.SYNCED:
            return obj.get_status_display()
        error = obj.last_error if len(obj.last_error) <= 60 else obj.last_error[:59] + "…"
        return format_html('{}<br><span class="quiet">{}</span>', obj.get_status_display(), error)

    @staticmethod
    def _short(moment: datetime | None) -> str | None:
        return date_format(timezone.localtime(moment), "Y-m-d H:i") if moment else None

    @admin.display(description=gettext_lazy("submitted"), ordering="created_at")
    def submitted(self, obj: Signup) -> str | None:
        return self._short(obj.created_at)

    @admin.display(description=gettext_lazy("synced or due"), ordering="next_attempt_at")
    def synced_or_next_attempt(self, obj: Signup) -> str | None:
        """When it was synced; or, while a worker is due to try again, when that is."""
        if obj.status == Signup.Status.SYNCED:
            return self._short(obj.synced_at)
        return self._short(obj.next_attempt_at) if obj.status in SCHEDULED_STATUSES else None

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[Signup], action: str, question: str
    ) -> TemplateResponse:
        """The intermediate page of a bulk action, as Django's "Delete selected" has: nothing changes yet."""
        now = timezone.now()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "opts": self.opts,
            "cl": SimpleNamespace(opts=self.opts),  # the admin's change list template draws the breadcrumbs
            "question": question,
            "action": action,
            "queryset": queryset,
            "in_flight": queryset.filter(sync.in_flight(now)).count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/cc_sync/signup/action_confirmation.html", context)

    def _report(self, request: HttpRequest, done_message: str, skipped: int) -> None:
        self.message_user(request, done_message, messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d signup was skipped: a worker is sending it right now (status syncing). "
                    "Look again once its attempt has finished.",
                    "%(count)d signups were skipped: a worker is sending them right now (status syncing). "
                    "Look again once their attempts have finished.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(description=gettext_lazy("Retry now"), permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Signup]) -> TemplateResponse | None:
        if request.POST.get("post") != "yes":
            return self._confirm(
                request,
                queryset,
                "retry_now",
                _("Send these signups to Constant Contact again now, with a fresh deadline?"),
            )
        done, skipped = sync.retry_now(queryset)
        self._report(request, _("%(count)d signups queued again.") % {"count": done}, skipped)
        return None

    @admin.action(description=gettext_lazy("Mark as failed"), permissions=["change"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Signup]) -> TemplateResponse | None:
        if request.POST.get("post") != "yes":
            return self._confirm(
                request,
                queryset,
                "mark_failed",
                _(
                    "Stop trying to send these signups? They are marked as failed (synced ones stay as they are)."
                ),
            )
        done, skipped = sync.mark_failed(
            queryset, _("Marked as failed by %(user)s.") % {"user": request.user}
        )
        self._report(request, _("%(count)d signups marked as failed.") % {"count": done}, skipped)
        return None


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by cc_sync itself: shown, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    """Entries are added by ``cc_sync_erase`` or :func:`cc_sync.privacy.suppress`.

    Never deleted here: lifting one lets that address reach CC again, so it takes
    ``manage.py cc_sync_unsuppress EMAIL --reason ...``, which leaves a record (a lifted suppression).
    """

    list_display = ("email_hash", "reason", "created_at")
    list_filter = ("reason",)
    readonly_fields = ("email_hash", "reason", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SuppressionLift)
class SuppressionLiftAdmin(ReadOnlyAdmin):
    """The records ``cc_sync_unsuppress`` leaves: who lifted which suppression, when and why."""

    list_display = ("email_hash", "original_reason", "lifted_by", "lifted_at", "reason")
    list_filter = ("original_reason",)
    search_fields = ("email_hash", "lifted_by")
    readonly_fields = ("email_hash", "original_reason", "reason", "lifted_by", "lifted_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


@admin.register(SurgeBatch)
class SurgeBatchAdmin(ReadOnlyAdmin):
    """Surge mode's bulk imports of due signups and their CC activities (cc_sync.surge); workers resume them."""

    list_display = ("__str__", "status", "state", "percent_done", "cannot_add_to_list_count", "created_at")
    list_filter = ("status",)
    readonly_fields = (
        "status",
        "list_ids",
        "activity_id",
        "state",
        "percent_done",
        "cannot_add_to_list_count",
        "errors",
        "last_error",
        "lease_expires_at",
        "created_at",
        "submitted_at",
        "finished_at",
    )
    exclude = ("signup_ids",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its signups are held until it ends
