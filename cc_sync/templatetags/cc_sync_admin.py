"""``{% cc_sync_banner %}``: the admin banner that says Constant Contact needs connecting (or, with several
connections, which of them need attention)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from ..fields import unreadable_fields
from ..models import Connection
from ..sync import default_list_ids

register = template.Library()


@register.inclusion_tag("admin/cc_sync/banner.html", takes_context=True)
def cc_sync_banner(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("cc_sync.change_connection"):
        return {"show": False}
    connections = list(Connection.objects.order_by("pk")[:2])
    if len(connections) > 1:
        return _several(context)
    connection = connections[0] if connections else None
    status = connection.status if connection else Connection.Status.DISCONNECTED
    # Tokens the configured keys cannot read are as good as none, whatever the status says.
    unreadable = bool(connection and unreadable_fields(connection))
    # Connected, but no list to send signups to: the step after Connect, prompted until it is done.
    needs_lists = (
        status == Connection.Status.CONNECTED
        and not unreadable
        and not (connection and default_list_ids(connection))
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


def _several(context: dict[str, Any]) -> dict[str, Any]:
    """Several connections: how many need attention, named (with what they need) when few."""
    from ..admin import NAMED_IN_BANNER, attention, signup_counts

    counts = signup_counts()
    needing = []
    for connection in Connection.objects.order_by("pk"):
        reason = attention(connection, counts.get(connection.pk))
        if reason:
            needing.append(
                {
                    "connection": connection,
                    "reason": reason,
                    "url": reverse("admin:cc_sync_connection_page", args=[connection.pk]),
                    "urgent": connection.status == Connection.Status.NEEDS_RECONNECT
                    or bool(unreadable_fields(connection)),
                }
            )
    return {
        "show": bool(needing),
        "several": True,
        "count": len(needing),
        "named": needing if len(needing) <= NAMED_IN_BANNER else [],
        "urgent": any(item["urgent"] for item in needing),
    }
