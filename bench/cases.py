"""6. Cost of a signup by case: the API requests one signup costs, for each thing CC may know about the address.

Real signups go through cc_sync (``enqueue_signup``, then the task's own ``sync.process_signup`` in this
process) against the sandbox, which has been seeded with the contact each case needs. The sandbox's request
log says which requests each signup cost. docs/signups.md ("Contact safety") documents the expected costs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import mail
from django.test.utils import override_settings

from cc_sync import confirmation, sync
from cc_sync.models import Signup
from cc_sync.sandbox import Sandbox

from .common import bench_rig, table, verdict

TITLE = "Cost of a signup by case"
SOURCE_URL = "https://www.example.com/newsletter/"
Status = Signup.Status


def _seed(permission: str = "explicit", on_list: bool = True, deleted: bool = False) -> Callable[..., None]:
    def seed(sandbox: Sandbox, email: str, list_id: str, other_list: str) -> None:
        sandbox.add_contact(
            email,
            first_name="Existing",
            last_name="Person",
            permission_to_send=permission,
            list_memberships=[list_id if on_list else other_list],
            deleted=deleted,
        )

    return seed


def _nothing(sandbox: Sandbox, email: str, list_id: str, other_list: str) -> None:
    return None


# name: (what CC has, seed, enqueue options, confirm first, extra CC_SYNC settings, documented requests)
CASES: list[tuple[str, str, Callable[..., None], dict[str, Any], bool, dict[str, Any], int]] = [
    ("new", "nothing", _nothing, {}, False, {}, 1),
    (
        "existing, subscribed, not on the list",
        "a contact with permission explicit, on another list",
        _seed(on_list=False),
        {},
        False,
        {},
        3,
    ),
    (
        "existing, already on the list",
        "a contact with permission explicit, on the signup's list",
        _seed(),
        {},
        False,
        {},
        2,
    ),
    (
        "existing, unsubscribed: held",
        "a contact with permission unsubscribed",
        _seed(permission="unsubscribed"),
        {},
        False,
        {},
        2,
    ),
    (
        "existing, unsubscribed: after the person confirms",
        "the same, after `cc_sync.confirmation.confirm`",
        _seed(permission="unsubscribed"),
        {},
        True,
        {},
        3,
    ),
    ("existing, deleted", "a deleted contact", _seed(deleted=True), {}, False, {}, 3),
    (
        "existing, signup `verified`",
        "a contact with permission explicit, on the signup's list",
        _seed(),
        {"verified": True},
        False,
        {},
        3,
    ),
    (
        "new, `CONFIRMED_OPT_IN_AT_CC`",
        "nothing",
        _nothing,
        {},
        False,
        {"CONFIRMED_OPT_IN_AT_CC": True},
        2,
    ),
]


def _describe(entries: list[dict[str, Any]]) -> str:
    path = {
        ("POST", "/v3/contacts"): "create",
        ("GET", "/v3/contacts"): "lookup",
        ("POST", "/v3/activities/add_list_memberships"): "add_list_memberships",
        ("POST", "/v3/contacts/sign_up_form"): "sign_up_form",
    }
    names = [path.get((e["method"], e["path"]), f"{e['method']} {e['path']}") for e in entries]
    return " -> ".join(f"{name} {e['status']}" for name, e in zip(names, entries, strict=True))


def _sync(sandbox: Sandbox, signup: Signup) -> list[dict[str, Any]]:
    """Run the sync task's body for one signup; the API requests it cost."""
    start = len(sandbox.requests())
    sync.process_signup(signup.pk)
    return [e for e in sandbox.requests()[start:] if e["kind"] == "api"]


def measure(rig: Any, case: tuple[Any, ...], count: int, index: int) -> dict[str, Any]:
    name, before, seed, options, confirm_first, extra, documented = case
    sandbox = rig.sandbox
    other_list = next(item["list_id"] for item in sandbox.lists() if item["list_id"] != rig.list_id)
    costs: list[int] = []
    sequences: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    mails = 0
    with override_settings(CC_SYNC={**settings.CC_SYNC, **extra}):
        for n in range(count):
            email = f"case{index}-{n:03d}@example.com"
            seed(sandbox, email, rig.list_id, other_list)
            signup = sync.enqueue_signup(
                email, first_name="Casey", last_name=f"Case{n}", source_url=SOURCE_URL, **options
            )
            assert signup is not None
            sent = len(mail.outbox)
            entries = _sync(sandbox, signup)
            if confirm_first:
                signup.refresh_from_db()
                if signup.status == Status.AWAITING_CONFIRMATION and confirmation.confirm(signup):
                    entries = _sync(sandbox, signup)  # the cost after the click
            mails += len(mail.outbox) - sent
            signup.refresh_from_db()
            costs.append(len(entries))
            sequences[_describe(entries)] += 1
            statuses[signup.status] += 1
    mean = sum(costs) / len(costs)
    return {
        "case": name,
        "at_cc": before,
        "signups": count,
        "requests_mean": mean,
        "requests_min": min(costs),
        "requests_max": max(costs),
        "documented": documented,
        "as_documented": min(costs) == max(costs) == documented,
        "sequences": dict(sequences),
        "statuses": dict(statuses),
        "confirmation_mails": mails,
    }


def run(quick: bool) -> dict[str, Any]:
    count = 3 if quick else 20
    with bench_rig("cases") as rig:
        rig.start_sandbox(api_rate=None, daily_quota=None)
        rig.configure(API_RATE=100_000.0)
        rig.connect()
        mail.outbox = []
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
            results = [measure(rig, case, count, index) for index, case in enumerate(CASES)]
    passed = all(r["as_documented"] for r in results)
    rows = [
        (
            r["case"],
            r["at_cc"],
            f"{r['requests_mean']:g}"
            + (
                ""
                if r["requests_min"] == r["requests_max"]
                else f" ({r['requests_min']}-{r['requests_max']})"
            ),
            r["documented"],
            "; ".join(
                f"{seq} (x{n})" if len(r["sequences"]) > 1 else seq for seq, n in r["sequences"].items()
            ),
            ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
            + (f"; {r['confirmation_mails']} confirmation emails" if r["confirmation_mails"] else ""),
        )
        for r in results
    ]
    markdown = "\n\n".join(
        [
            f"**How it was run.** For each case, {count} signups through `cc_sync.sync.enqueue_signup` (default "
            "list, a first and last name, the page's URL for the confirmation link), each synced by the task's "
            "own `cc_sync.sync.process_signup` in this process, against the sandbox seeded with the contact the "
            "case needs (`Sandbox.add_contact`). The requests are those the sandbox logged on `/v3` for each "
            "signup (a fresh access token, so no token call). The confirmed case is measured after "
            "`cc_sync.confirmation.confirm` (what the person's click does): its first attempt is the held "
            "case above it.",
            table(
                [
                    "case",
                    "at CC before",
                    "requests per signup",
                    "docs/signups.md",
                    "requests (status)",
                    "signups afterwards",
                ],
                rows,
            ),
            "Every request is one of CC's 10,000 a day. "
            + (
                "**Every case costs what docs/signups.md documents.**"
                if passed
                else "**Some cases differ from docs/signups.md:** "
                + "; ".join(
                    f"{r['case']}: {r['requests_min']}-{r['requests_max']}, documented {r['documented']}"
                    for r in results
                    if not r["as_documented"]
                )
                + "."
            ),
        ]
    )
    return {
        "title": TITLE,
        "goal": "each case costs the requests docs/signups.md documents",
        "result": ", ".join(f"{r['case']}: {r['requests_mean']:g}" for r in results),
        "verdict": verdict(passed),
        "markdown": markdown,
        "figures": {"cases": results, "as_documented": passed},
    }
