"""What the fault scenarios share: the result they fill, the observations and checks they make.

A scenario is a function ``(rig, quick, result)`` that fills a :class:`Result` with what it injected, the
figures it observed and the checks it made.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Sum

from cc_sync.models import Connection, Signup
from cc_sync.sandbox import Sandbox
from rig.database import status_counts
from rig.deployment import Rig
from rig.processes import Worker
from rig.waiting import TimedOut, wait_until

Status = Signup.Status
# The requests one signup costs (docs/signups.md, "Contact safety"): a new address is created with
# POST /v3/contacts; an existing one (409) is looked up with GET /v3/contacts?email=..., then gets the lists
# it lacks (add_list_memberships) or, only for confirmed, verified or deleted contacts, sign_up_form.
CONTACTS_PATH = "/v3/contacts"
SIGN_UP_PATH = "/v3/contacts/sign_up_form"
ADD_LISTS_PATH = "/v3/activities/add_list_memberships"
CONTACT_PATHS = (CONTACTS_PATH, SIGN_UP_PATH, ADD_LISTS_PATH)
CLEAN_STATUSES = (200, 201)


@dataclass
class Check:
    text: str
    passed: bool
    detail: str = ""


@dataclass
class Result:
    name: str
    title: str
    goal: str
    quick: bool
    injected: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def check(self, text: str, passed: Any, detail: Any = "") -> bool:
        self.checks.append(Check(text, bool(passed), str(detail)))
        return bool(passed)

    def failures(self) -> list[str]:
        return [f"{c.text}: {c.detail}" if c.detail else c.text for c in self.checks if not c.passed]


# -- shared observations ----------------------------------------------------------------------------


def contact_requests(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API requests of the sync path: create, lookup, add_list_memberships and sign_up_form."""
    return [e for e in entries if e["kind"] == "api" and e["path"] in CONTACT_PATHS]


def creates(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /v3/contacts``: each sync attempt of a new address starts with one."""
    return [e for e in entries if e["kind"] == "api" and e["method"] == "POST" and e["path"] == CONTACTS_PATH]


def sign_ups(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == "api" and e["path"] == SIGN_UP_PATH]


def is_clean(entry: dict[str, Any]) -> bool:
    """A valid CC answer was sent: 200/201, no fault injected (the body is CC's JSON)."""
    return entry["status"] in CLEAN_STATUSES and entry["fault"] is None


def is_valid_answer(entry: dict[str, Any]) -> bool:
    """A clean answer that can end a sync: the created contact (201 with its id), the lookup that found
    the existing contact (200), or sign_up_form's contact (200/201)."""
    if not is_clean(entry) or entry["kind"] != "api":
        return False
    if entry["path"] == CONTACTS_PATH:
        return (entry["method"], entry["status"]) in (("POST", 201), ("GET", 200))
    return entry["path"] == SIGN_UP_PATH


def is_failed_answer(entry: dict[str, Any]) -> bool:
    """An answer that makes cc_sync try again: injected faults, dropped connections, 429, 5xx, 401."""
    return entry["fault"] is not None or entry["status"] not in (*CLEAN_STATUSES, 409)


def store_check(
    result: Result, sandbox: Sandbox, emails: Iterable[str], label: str = "", list_id: str | None = None
) -> dict[str, Any]:
    """Every email exactly once in the sandbox's contact store, and nothing else there.

    With ``list_id``: every one of them is a member of that list (cc_sync's lists reached CC whichever
    path the sync took: created with them, or added after a lookup).
    """
    expected = Counter(e.lower() for e in emails)
    contacts = sandbox.contacts()
    stored = Counter(c["email_address"].lower() for c in contacts)
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    doubled = sorted(e for e, n in stored.items() if n > 1)
    result.check(
        f"{label}each email exactly once in the sandbox's contact store",
        not missing and not extra and not doubled,
        f"missing {len(missing)} {missing[:5]}, unexpected {len(extra)} {extra[:5]}, twice {doubled[:5]}",
    )
    if list_id is not None:
        off_list = sorted(
            c["email_address"].lower()
            for c in contacts
            if c["email_address"].lower() in expected
            and list_id.lower() not in [m.lower() for m in c.get("list_memberships") or []]
        )
        result.check(
            f"{label}each of them on cc_sync's list at CC", not off_list, f"{len(off_list)}: {off_list[:5]}"
        )
    return {"contacts in the store": sum(stored.values()), "missing": len(missing), "unexpected": len(extra)}


def synced_rows_check(result: Result, sandbox: Sandbox, label: str = "", rows: Any = None) -> int:
    """Each synced row carries the contact id CC holds for its email, and a valid answer was sent for it.

    A valid answer (:func:`is_valid_answer`) is CC's 201 to the create, its 200 to the lookup of an address
    it has (after a 409), or its answer to sign_up_form, without an injected fault, before the row was
    marked synced. ``rows``: the synced signups to check (default: all).
    """
    contacts = {c["email_address"].lower(): c["contact_id"] for c in sandbox.contacts()}
    clean_times: dict[str, list[float]] = defaultdict(list)
    for entry in contact_requests(sandbox.requests()):
        if is_valid_answer(entry) and entry["email"]:
            clean_times[entry["email"].lower()].append(entry["time"])
    bad = []
    if rows is None:
        rows = Signup.objects.filter(status=Status.SYNCED)
    for email, contact_id, synced_at in rows.values_list("email", "contact_id", "synced_at"):
        key = email.lower()
        answered = any(t <= synced_at.timestamp() + 0.5 for t in clean_times.get(key, []))
        if contacts.get(key) != contact_id or not answered:
            bad.append(email)
    result.check(
        f"{label}no row marked synced without a valid CC answer (contact id matches the store)",
        not bad,
        f"{len(bad)} rows: {bad[:5]}",
    )
    return len(bad)


def wait_for_statuses(
    rig: Rig,
    condition: Callable[[dict[str, int]], bool],
    timeout: float,
    on_tick: Callable[[], None] | None = None,
) -> bool:
    def probe() -> bool:
        rig.supervise()
        if on_tick:
            on_tick()
        return condition(status_counts())

    try:
        return bool(wait_until(probe, timeout, interval=0.5, what="the signups' statuses"))
    except TimedOut:
        return False


def emails(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{n:05d}@example.com" for n in range(start, start + count)]


def sweeps_sent(rig: Rig) -> int:
    """Sweep tasks beat sent (from its INFO log lines)."""
    return sum(
        path.read_text(errors="replace").count("Sending due task cc_sync.sweep_due_signups")
        for path in rig.workdir.glob("beat*.log")
    )


def message_figures(rig: Rig, signups: int) -> dict[str, Any]:
    lpush = rig.redis.calls("lpush")
    sweeps = sweeps_sent(rig)
    sync_messages = max(0, lpush - sweeps)
    claims = Signup.objects.aggregate(n=Sum("attempts"))["n"] or 0
    return {
        "web-side publishes the broker did not take": rig.web_publish_failures(),
        "broker messages published (LPUSH)": lpush,
        "of which sweep tasks from beat": sweeps,
        "sync messages per signup": round(sync_messages / signups, 2) if signups else 0,
        "claims (attempts) per signup": round(claims / signups, 2) if signups else 0,
        "sync messages that claimed nothing (duplicates, or lost with the broker)": max(
            0, sync_messages - claims
        ),
    }


def current_tokens() -> list[str]:
    connection = Connection.load()
    return [connection.access_token, connection.refresh_token, sandbox_secret()]


def sandbox_secret() -> str:
    from django.conf import settings

    return settings.CC_SYNC.get("CLIENT_SECRET", "")


def two_workers_and_beat(rig: Rig) -> list[Worker]:
    """Two prefork workers of 3 processes each and beat, all ready for tasks."""
    workers = [rig.start_worker("w1", concurrency=3), rig.start_worker("w2", concurrency=3)]
    rig.start_beat()
    for worker in workers:
        worker.wait_ready()
    rig.wait_consumers(2, timeout=60)
    return workers


def connected_worker_and_beat(rig: Rig, api_rate: float = 20.0) -> tuple[Sandbox, Worker]:
    """The sandbox at ``api_rate`` (cc_sync paced the same), a connection, one worker of 2 processes, beat."""
    sandbox = rig.start_sandbox(api_rate=api_rate)
    rig.configure(API_RATE=api_rate)
    rig.connect()
    worker = rig.start_worker("w1", concurrency=2)
    rig.start_beat()
    worker.wait_ready()
    return sandbox, worker


# -- notes drawn from the figures -------------------------------------------------------------------


def exit_note(rig: Rig, result: Result) -> None:
    reasons = rig.exit_reasons()
    result.figures["processes that exited on their own (restarted by the rig)"] = "; ".join(
        rig.unexpected_exits
    )
    result.notes.append(
        f"Celery processes exited on their own {len(rig.unexpected_exits)} time(s) when the broker went away "
        f"(logged: {'; '.join(f'{n} x {r}' for r, n in reasons.items()) or 'no reason logged'}). The "
        "traceback ends in the Celery worker's connection-loss handling "
        "(`Consumer.on_connection_error_after_connected` closing the lost connection; kombu's Redis channel "
        "fails in `restore_unacked`), not in cc_sync. The rig restarted them at once, as a process "
        "supervisor (systemd `Restart=always`, Kubernetes) would, and nothing was lost; a deployment "
        "without such a supervisor would stop syncing until someone restarts the worker."
    )


def amplification_note(result: Result, signups: int, requeue_after: float) -> None:
    idle = result.figures.get("sync messages that claimed nothing (duplicates, or lost with the broker)", 0)
    if idle > 0.5 * signups:
        result.notes.append(
            f"{idle} sync messages ({idle / signups:.1f} per signup) claimed nothing: each found its row "
            "already claimed or synced through another message. Apart from those wiped with the broker and the "
            "redeliveries after kills, they come from the sweeper: `cc_sync.sync.sweep` takes a message as lost "
            f"once it is older than REQUEUE_AFTER ({requeue_after:g} s here) plus the time the queued backlog "
            "needs at API_RATE, and queues the row again; a message still waiting behind a slower queue than "
            "that estimate becomes a duplicate. The claim makes them harmless for CC (no duplicate POST), but "
            "they cost queue space and database work."
        )
