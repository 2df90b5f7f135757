"""``{% cc_sync_banner %}``: the admin banner that says Constant Contact needs connecting."""

from __future__ import annotations

from typing import Any

from django import template

from ..conf import app_settings
from ..fields import unreadable_fields
from ..models import Connection

register = template.Library()


@register.inclusion_tag("admin/cc_sync/banner.html", takes_context=True)
def cc_sync_banner(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("cc_sync.change_connection"):
        return {"show": False}
    connection = Connection.objects.filter(slug=Connection.DEFAULT_SLUG).first()
    status = connection.status if connection else Connection.Status.DISCONNECTED
    # Tokens the configured keys cannot read are as good as none, whatever the status says.
    unreadable = bool(connection and unreadable_fields(connection))
    # Connected, but no list to send signups to: the step after Connect, prompted until it is done.
    needs_lists = (
        status == Connection.Status.CONNECTED
        and not unreadable
        and not (connection and connection.list_ids)
        and not app_settings.LIST_IDS
    )
    return {
        "show": status != Connection.Status.CONNECTED or unreadable or needs_lists,
        "needs_lists": needs_lists,
        "status": status,
        "needs_reconnect": status == Connection.Status.NEEDS_RECONNECT,
        "tokens_unreadable": unreadable,
        "last_error": connection.last_error if connection else "",
        "csrf_token": context.get("csrf_token"),
    }
