"""The sandbox's HTML pages: consent screens, error pages and the live overview at ``/``.

Plain strings with every dynamic value passed through :func:`html.escape`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "contact_data": "Read and write your contacts and contact lists",
    "campaign_data": "Read and write your email campaigns",
    "account_read": "Read your account details, such as the organization name",
    "account_update": "Update your account details",
    "offline_access": "Keep access when you are not signed in (refresh tokens)",
    "billing_data": "Read your billing details",
    "openid": "Sign you in with your Constant Contact identity",
    "profile": "Read your basic profile",
    "email": "Read your email address",
}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1b2733}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #dde3ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
code{background:#f1f4f7;padding:0 .2rem}.muted{color:#65717e}.error{color:#a11}
button{font-size:1rem;padding:.5rem 1.5rem;margin-right:1rem;cursor:pointer}
.box{border:1px solid #dde3ea;border-radius:.5rem;padding:1rem 1.5rem}
"""


def page(title: str, body: str, *, refresh: int | None = None) -> str:
    """A complete HTML document; ``body`` must already be escaped."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{meta}<style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def error_page(title: str, message: str) -> str:
    """What the authorization server shows instead of redirecting (bad client or redirect URI)."""
    return page(
        title,
        f'<h1 class="error">{escape(title)}</h1><p>{escape(message)}</p>'
        '<p class="muted">Constant Contact sandbox</p>',
    )


def _scope_items(scope: str) -> str:
    return "".join(
        f"<li><code>{escape(name)}</code> &ndash; {escape(SCOPE_DESCRIPTIONS.get(name, name))}</li>"
        for name in scope.split()
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )


# (account id, organization name, signed in?) for each account the sandbox serves.
AccountChoices = Sequence[tuple[str, str, bool]]


def _account_select(accounts: AccountChoices) -> str:
    """A choice of the approving account (sandbox only: CC shows the account you are signed in to)."""
    if len(accounts) < 2:
        return ""
    options = "".join(
        f'<option value="{escape(account_id)}"{" selected" if chosen else ""}>'
        f"{escape(organization)} ({escape(account_id)})</option>"
        for account_id, organization, chosen in accounts
    )
    return f'<p><label>Approve for account <select name="account">{options}</select></label></p>'


def _decision_form(action: str, fields: Mapping[str, str], accounts: AccountChoices = ()) -> str:
    return (
        f'<form method="post" action="{escape(action)}">{_hidden(fields)}{_account_select(accounts)}'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
    )


def consent_page(
    *,
    app_name: str,
    organization: str,
    scope: str,
    action: str,
    fields: Mapping[str, str],
    accounts: AccountChoices = (),
) -> str:
    """The authorization-code consent screen, posting ``fields`` back with ``decision=allow|deny`` (and
    ``account`` when there are several ``accounts`` to choose from)."""
    return page(
        f"Authorize {app_name}",
        '<div class="box">'
        f"<h1>{escape(app_name)} wants to access your Constant Contact account</h1>"
        f"<p>Signed in to <strong>{escape(organization)}</strong> (sandbox user).</p>"
        f"<p>It asks to:</p><ul>{_scope_items(scope)}</ul>"
        f"{_decision_form(action, fields, accounts)}"
        "</div>",
    )


def device_entry_page(action: str, message: str = "") -> str:
    """The device-flow verification page asking for the code shown on the device."""
    note = f'<p class="error">{escape(message)}</p>' if message else ""
    return page(
        "Activate your device",
        '<div class="box"><h1>Activate your device</h1>'
        f"{note}<p>Enter the code shown by the application.</p>"
        f'<form method="get" action="{escape(action)}">'
        '<input name="user_code" placeholder="ABCD-EFGH" autofocus> '
        '<button type="submit">Next</button></form></div>',
    )


def device_consent_page(
    *,
    app_name: str,
    organization: str,
    scope: str,
    user_code: str,
    action: str,
    accounts: AccountChoices = (),
) -> str:
    """The device-flow consent screen for one user code."""
    return page(
        f"Authorize {app_name}",
        '<div class="box">'
        f"<h1>{escape(app_name)} wants to access your Constant Contact account</h1>"
        f"<p>Device code <code>{escape(user_code)}</code>, "
        f"signed in to <strong>{escape(organization)}</strong> (sandbox user).</p>"
        f"<p>It asks to:</p><ul>{_scope_items(scope)}</ul>"
        f"{_decision_form(action, {'user_code': user_code}, accounts)}"
        "</div>",
    )


def device_done_page(approved: bool) -> str:
    """Shown after a device-flow decision."""
    if approved:
        return page(
            "Device activated",
            "<h1>Device activated</h1><p>You can close this window and return to your device.</p>",
        )
    return page("Access denied", "<h1>Access denied</h1><p>The device was not given access.</p>")


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], empty: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if cell is None else str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _contacts_table(contacts: Iterable[Mapping[str, Any]], lists: Iterable[Mapping[str, Any]]) -> str:
    list_names = {item["list_id"]: item["name"] for item in lists}
    return _table(
        ["Email", "First name", "Last name", "Permission", "Lists", "Created", "Updated"],
        (
            (
                c["email_address"] or (c.get("sms_channel") or {}).get("sms_address") or "-",
                c.get("first_name"),
                c.get("last_name"),
                (c.get("permission_to_send") or "-") + (" (deleted)" if c.get("deleted_at") else ""),
                ", ".join(list_names.get(list_id, list_id) for list_id in c["list_memberships"]),
                c["created_at"],
                c["updated_at"],
            )
            for c in contacts
        ),
        "No contacts yet. Submit a signup and watch it land here.",
    )


def _other_accounts(state: Mapping[str, Any]) -> str:
    """The accounts added besides the default one: a table, and each one's contacts."""
    accounts = state.get("accounts", [])
    if len(accounts) < 2:
        return ""
    summary = _table(
        ["Account id", "Organization", "Lists", "Contacts", "Signed in"],
        (
            (
                item["account"]["encoded_account_id"],
                item["account"].get("organization_name"),
                len(item["lists"]),
                len(item["contacts"]),
                "yes" if item["account"]["encoded_account_id"] == state.get("signed_in") else "",
            )
            for item in accounts
        ),
        "No accounts.",
    )
    sections = "".join(
        f"<h2>Contacts of {escape(str(item['account']['encoded_account_id']))} ({len(item['contacts'])})</h2>"
        + _contacts_table(item["contacts"], item["lists"])
        for item in accounts[1:]
    )
    return f"<h2>Accounts</h2>{summary}{sections}"


def index_page(state: Mapping[str, Any], base_url: str, last: int = 50) -> str:
    """The overview at ``/``: apps, lists, contacts and the latest requests; reloads every 3 seconds.
    Lists and contacts are the default account's; other accounts follow under "Accounts"."""
    config = state["config"]
    apps = _table(
        ["Name", "Client id", "Flow", "Redirect URIs"],
        (
            (app["name"], app["client_id"], app["flow"], " ".join(app["redirect_uris"]) or "-")
            for app in config["apps"]
        ),
        "No applications.",
    )
    lists = _table(
        ["Name", "List id", "Members"],
        (
            (
                item["name"] + (" (deleted)" if item.get("deleted_at") else ""),
                item["list_id"],
                sum(item["list_id"] in c["list_memberships"] for c in state["contacts"]),
            )
            for item in state["lists"]
        ),
        "No lists.",
    )
    contacts = _contacts_table(state["contacts"], state["lists"])
    recent = list(state["requests"])[-last:][::-1]
    several = len(state.get("accounts", [])) > 1  # then say which account each request was for
    requests = _table(
        ["Time (UTC)", "Kind", "Request", "Status", "Detail", "Fault"],
        (
            (
                time.strftime("%H:%M:%S", time.gmtime(entry["time"])),
                entry["kind"],
                f"{entry['method']} {entry['path']}",
                "dropped" if entry["status"] is None else entry["status"],
                " ".join(
                    str(value)
                    for value in (
                        entry.get("account") if several else None,
                        entry.get("grant_type"),
                        entry.get("email"),
                        entry.get("detail"),
                        entry.get("error"),
                    )
                    if value
                ),
                entry.get("fault") or "",
            )
            for entry in recent
        ),
        "No requests yet.",
    )
    activities = _table(
        ["Activity", "State", "Done", "Contacts", "Errors", "Created"],
        (
            (
                item["activity_id"],
                item["state"],
                f"{item['percent_done']}%",
                item["status"]["person_count"],
                len(item["activity_errors"]),
                item["created_at"],
            )
            for item in list(state.get("activities", []))[-last:][::-1]
        ),
        "No bulk imports yet.",
    )
    settings = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(str(config[name]))}</td></tr>"
        for name in (
            "refresh_tokens",
            "token_lifetime",
            "token_rate",
            "api_rate",
            "daily_quota",
            "faults",
            "delay",
            "import_polls",
        )
    )
    return page(
        "Constant Contact sandbox",
        "<h1>Constant Contact sandbox</h1>"
        f'<p class="muted">{escape(base_url)} &middot; JSON: <a href="/_sandbox/state">/_sandbox/state</a>'
        " &middot; this page reloads every 3 seconds</p>"
        f"<h2>Applications</h2>{apps}"
        f"<h2>Settings</h2><table>{settings}</table>"
        f"<h2>Lists</h2>{lists}"
        f"<h2>Contacts ({len(state['contacts'])})</h2>{contacts}"
        f"{_other_accounts(state)}"
        f"<h2>Bulk imports</h2>{activities}"
        f"<h2>Latest requests</h2>{requests}",
        refresh=3,
    )
