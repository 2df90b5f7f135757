"""The fault scenarios. Each injects faults into a running rig, waits for the outcome and checks it.

A scenario is a function ``(rig, quick, result)`` that fills ``result`` with what it injected, the figures
it observed and the checks it made; :func:`run` gives it a fresh :class:`~rig.deployment.Rig`. ``quick`` picks
the smaller sizes that CI runs; the shape of every scenario is the same in both sizes.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock

import requests
from django.db import connections, transaction
from django.db.models import DurationField, ExpressionWrapper, F, Sum, Value
from django.db.models.functions import Coalesce
from django.test import Client
from django.utils import timezone

from cc_sync import oauth, sync
from cc_sync.client import ConstantContactClient
from cc_sync.models import Connection, RateLimitState, Signup
from cc_sync.sandbox import Sandbox
from cc_sync.sync import enqueue_signup
from rig.database import status_counts
from rig.deployment import Rig
from rig.figures import max_in_any_window, percentile
from rig.processes import Worker
from rig.timing import SCALED
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


def synced_rows_check(result: Result, sandbox: Sandbox, label: str = "") -> int:
    """Each synced row carries the contact id CC holds for its email, and a valid answer was sent for it.

    A valid answer (:func:`is_valid_answer`) is CC's 201 to the create, its 200 to the lookup of an address
    it has (after a 409), or its answer to sign_up_form, without an injected fault, before the row was
    marked synced.
    """
    contacts = {c["email_address"].lower(): c["contact_id"] for c in sandbox.contacts()}
    clean_times: dict[str, list[float]] = defaultdict(list)
    for entry in contact_requests(sandbox.requests()):
        if is_valid_answer(entry) and entry["email"]:
            clean_times[entry["email"].lower()].append(entry["time"])
    bad = []
    rows = Signup.objects.filter(status=Status.SYNCED).values_list("email", "contact_id", "synced_at")
    for email, contact_id, synced_at in rows:
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


# -- 1. no loss, no duplicate ----------------------------------------------------------------------


def no_loss(rig: Rig, quick: bool, result: Result) -> None:
    total = 200 if quick else 2000
    submit_rate = 10.0
    outage = 10.0 if quick else 60.0
    kill_kinds = ["child", "main"] if quick else ["child", "main", "child", "main", "child"]
    api_rate = 20.0
    drain_limit = 180.0 if quick else 600.0
    faults = {"error_5xx": 0.10, "timeout": 0.05, "drop": 0.02, "throttle": 0.03, "html_200": 0.01}
    timeout_seconds = 2 * SCALED["READ_TIMEOUT"]
    result.injected = [
        f"{total} signups through `enqueue_signup` at {submit_rate:.0f}/s",
        "sandbox faults on every `/v3` call: 10 % 5xx (500/502/503), 5 % answered after "
        f"{timeout_seconds:.0f} s (2x the client's read timeout; CC stores the contact), 2 % dropped "
        "connections, 3 % 429, 1 % 200 with an HTML body (CC stores the contact)",
        f"the rig's Redis broker stopped (SIGTERM, no persistence: every queued message lost) for "
        f"{outage:.0f} s in the middle of the submissions, which go on meanwhile",
        f"{len(kill_kinds)} SIGKILLs by process id at seeded random times: {kill_kinds.count('child')} x a pool "
        f"process (Celery forks a new one), {kill_kinds.count('main')} x a worker's main process (its pool "
        "processes die with it; the rig starts the worker again 1 s later)",
        f"2 prefork workers x 3 processes, beat sweeping every second; API rate {api_rate:.0f}/s on both "
        "sides (sandbox and cc_sync)",
    ]
    sandbox = rig.start_sandbox(api_rate=api_rate, faults=faults, timeout_seconds=timeout_seconds)
    rig.configure(API_RATE=api_rate)
    tokens = rig.connect()
    workers = [rig.start_worker("w1", concurrency=3), rig.start_worker("w2", concurrency=3)]
    rig.start_beat()
    for worker in workers:
        worker.wait_ready()
    rig.wait_consumers(2, timeout=60)

    rng = random.Random(rig.seed)
    duration = total / submit_rate
    outage_start = duration * 0.35
    outage_end = outage_start + outage
    kill_times = sorted(
        duration * (0.1 + 0.85 * (i + rng.random()) / len(kill_kinds)) for i in range(len(kill_kinds))
    )
    plan: list[tuple[float, str]] = [(outage_start, "redis down"), (outage_end, "redis up")]
    plan += [(t, f"kill {kind}") for t, kind in zip(kill_times, kill_kinds, strict=True)]
    plan.sort()

    addresses = emails("nl", total)
    disruptions: list[float] = []
    kills: list[str] = []
    accept_times: list[float] = []
    outage_accept_times: list[float] = []
    outage_window: list[float] = []
    unpublished_at_recovery = 0
    queue_peak = 0
    started = time.monotonic()
    submitted = 0

    def run_event(action: str) -> None:
        nonlocal unpublished_at_recovery
        if action == "redis down":
            rig.redis.stop()
            outage_window.append(time.time())
            disruptions.append(time.time())
            rig.note("redis stopped (queue wiped)")
        elif action == "redis up":
            unpublished_at_recovery = Signup.objects.filter(
                status=Status.PENDING, enqueued_at__isnull=True
            ).count()
            rig.redis.start()
            outage_window.append(time.time())
            rig.note(f"redis started again; {unpublished_at_recovery} pending rows were never published")
        else:
            kind = action.split()[1]
            worker = workers[len(kills) % len(workers)]
            if not worker.running:
                rig.supervise()
            if kind == "child" and worker.children():
                pid = rng.choice(worker.children())
                os.kill(pid, signal.SIGKILL)
            else:
                kind = "main"
                pid = worker.kill()
                time.sleep(1.0)
                rig.restart(worker)
            disruptions.append(time.time())
            kills.append(f"{kind} {pid} of {worker.name} at {time.time() - rig.started:.0f} s")
            rig.note(f"SIGKILL {kind} process {pid} of {worker.name}")

    while submitted < total or plan:
        elapsed = time.monotonic() - started
        while plan and plan[0][0] <= elapsed:
            run_event(plan.pop(0)[1])
        due = min(total, int(elapsed * submit_rate) + 1)
        while submitted < due:
            moment = time.perf_counter()
            enqueue_signup(addresses[submitted], first_name="Nora", last_name="Loss")
            spent = time.perf_counter() - moment
            accept_times.append(spent)
            if len(outage_window) == 1:
                outage_accept_times.append(spent)
            submitted += 1
        if submitted % 50 == 0:
            rig.supervise()
            queue_peak = max(queue_peak, rig.redis.queue_length() or 0)
        time.sleep(0.02)
    last_submission = time.time()
    rig.note(f"all {total} submitted; waiting for the queue to drain")

    def sample() -> None:
        nonlocal queue_peak
        queue_peak = max(queue_peak, rig.redis.queue_length() or 0)

    drained = wait_for_statuses(rig, lambda c: c.get(Status.SYNCED, 0) >= total, drain_limit, sample)
    drain_time = time.time() - last_submission
    rig.note(f"drained: {drained} after {drain_time:.0f} s; statuses {status_counts()}")

    log = sandbox.requests()
    requests_ = contact_requests(log)
    by_email: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in requests_:
        by_email[(entry["email"] or "").lower()].append(entry)
    attempts = [len(creates(by_email[a.lower()])) for a in addresses]
    per_email = [len(by_email[a.lower()]) for a in addresses]
    fault_counts = Counter(e["fault"] for e in requests_ if e["fault"])
    unforced_429 = sum(1 for e in requests_ if e["status"] == 429 and e["fault"] is None)
    paths = Counter(f"{e['method']} {e['path']}" for e in requests_)
    conflicts = sum(1 for e in creates(requests_) if e["status"] == 409)
    unexplained, explained = [], 0
    for address in addresses:
        entries = by_email[address.lower()]
        # Each attempt starts with a create; after a lost answer it meets 409 and looks the contact up.
        tries = len(creates(entries))
        failed = sum(1 for e in entries if is_failed_answer(e))
        if tries <= 1 + failed:
            continue
        valid = [e["time"] for e in entries if is_valid_answer(e)]
        first = valid[0] if valid else None
        if first is not None and any(
            first - 1 <= d <= first + SCALED["READ_TIMEOUT"] + 5 for d in disruptions
        ):
            explained += 1
        else:
            unexplained.append(address)
    counts = status_counts()

    result.figures.update(
        {
            "signups submitted": total,
            "accepted while the broker was down": len(outage_accept_times),
            "slowest acceptance (enqueue_signup), s": round(max(accept_times), 3),
            "slowest acceptance while the broker was down, s": round(max(outage_accept_times or [0]), 3),
            "pending rows never published when the broker came back": unpublished_at_recovery,
            "broker outage, s": round(outage_window[1] - outage_window[0], 1)
            if len(outage_window) == 2
            else 0,
            "SIGKILLs": "; ".join(kills),
            "sync-path requests seen by the sandbox": ", ".join(f"{k} {v}" for k, v in sorted(paths.items())),
            "creates answered 409 (the contact existed: CC had done an earlier attempt's work)": conflicts,
            "injected faults": ", ".join(f"{k} {v}" for k, v in sorted(fault_counts.items())),
            "unforced 429 (sandbox rate limit)": unforced_429,
            "API requests per email: mean / max": f"{sum(per_email) / total:.2f} / {max(per_email)}",
            "create attempts (POST /v3/contacts) per email: mean / max": (
                f"{sum(attempts) / total:.2f} / {max(attempts)}"
            ),
            "create attempts per email (histogram)": ", ".join(
                f"{k}: {v}" for k, v in sorted(Counter(attempts).items())
            ),
            "emails with a second valid answer after a kill or the outage": explained,
            "emails with more creates than 1 + failed answers, unexplained": len(unexplained),
            "final statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            "drain time after the last submission, s": round(drain_time, 1),
            "peak broker queue length": queue_peak,
            **message_figures(rig, total),
        }
    )
    amplification_note(result, total, SCALED["REQUEUE_AFTER"])
    result.check(f"all {total} signups synced", counts.get(Status.SYNCED, 0) == total, counts)
    result.figures.update(store_check(result, sandbox, addresses, list_id=rig.list_id))
    synced_rows_check(result, sandbox)
    result.check(
        "create attempts per email <= 1 + the answers that failed (or were lost to a kill/outage)",
        not unexplained,
        f"{len(unexplained)} emails: {unexplained[:5]}",
    )
    others = {k: v for k, v in paths.items() if k not in ("POST /v3/contacts", "GET /v3/contacts")}
    result.check(
        "only creates and, after a 409, lookups: every address was new, so neither sign_up_form nor "
        "add_list_memberships was needed",
        not others,
        others,
    )
    result.check(
        f"drained within {drain_limit / 60:.0f} min of the last submission", drained, f"{drain_time:.0f} s"
    )
    result.check(
        "every planned fault happened (outage, kills, each fault kind)",
        len(outage_window) == 2 and len(kills) == len(kill_kinds) and set(fault_counts) >= set(faults),
        f"outage {outage_window}, kills {len(kills)}, faults {dict(fault_counts)}",
    )
    leaks = rig.leaked([tokens["access_token"], tokens["refresh_token"], *current_tokens()])
    result.check("no token in any log or mail of the run", not leaks, leaks)


def current_tokens() -> list[str]:
    connection = Connection.load()
    return [connection.access_token, connection.refresh_token, sandbox_secret()]


def sandbox_secret() -> str:
    from django.conf import settings

    return settings.CC_SYNC.get("CLIENT_SECRET", "")


# -- 2. one refresh ----------------------------------------------------------------------------------


def one_refresh(rig: Rig, quick: bool, result: Result) -> None:
    rounds = 5 if quick else 50
    processes = 8
    result.injected = [
        f"{processes} separate solo-pool Celery worker processes, all idle and waiting on the queue",
        f"{rounds} rounds; each round expires the stored access token (and the sandbox's copy), then "
        f"publishes {processes} signups at once, one per process",
        "rotating refresh tokens (single use: an old one is answered invalid_grant); token endpoint limit 1/s; "
        "no API rate limit on either side, so that the 8 tasks run at the same moment",
    ]
    sandbox = rig.start_sandbox(refresh_tokens="rotating", api_rate=None, token_rate=1)
    rig.configure(API_RATE=1000.0, TOKEN_RATE=1.0)
    rig.connect()
    for n in range(processes):
        rig.start_worker(f"r{n}", concurrency=1, pool="solo")
    if not result.check(f"{processes} worker processes waiting", rig.wait_consumers(processes, 120)):
        return

    refresh_deltas, spreads, failures = [], [], []
    token_401 = invalid_grant = 0
    for round_number in range(rounds):
        rig.supervise()
        rig.wait_consumers(processes, 30)
        before = Connection.load()
        calls_before = sandbox.token_calls("refresh_token")
        log_start = len(sandbox.requests())
        rig.expire_stored_token()
        sandbox.expire_access_tokens()
        with transaction.atomic():
            ids = [enqueue_signup(address).pk for address in emails(f"round{round_number:02d}-", processes)]
        done = False
        with suppress(TimedOut):  # the round's problems below say what did not happen
            done = wait_until(
                lambda ids=ids: Signup.objects.filter(pk__in=ids, status=Status.SYNCED).count() == processes,
                30,
                interval=0.1,
                what=f"the {processes} signups of the round synced",
            )
        after = Connection.load()
        entries = sandbox.requests()[log_start:]
        posts = creates(entries)
        refresh_deltas.append(sandbox.token_calls("refresh_token") - calls_before)
        token_401 += sum(1 for e in contact_requests(entries) if e["status"] == 401)
        invalid_grant += sum(1 for e in entries if e["kind"] == "token" and e["error"] == "invalid_grant")
        attempts = list(Signup.objects.filter(pk__in=ids).values_list("attempts", flat=True))
        if posts:
            spreads.append(max(e["time"] for e in posts) - min(e["time"] for e in posts))
        problems = []
        if not done:
            problems.append(f"only {Signup.objects.filter(pk__in=ids, status=Status.SYNCED).count()} synced")
        if refresh_deltas[-1] != 1:
            problems.append(f"{refresh_deltas[-1]} refresh calls")
        if after.refresh_token == before.refresh_token or after.access_token == before.access_token:
            problems.append("the stored tokens did not change")
        if after.status != Connection.Status.CONNECTED:
            problems.append(f"connection {after.status}")
        if any(a != 1 for a in attempts):
            problems.append(f"attempts {attempts}")
        if problems:
            failures.append(f"round {round_number}: {', '.join(problems)}")
        rig.note(f"round {round_number}: {refresh_deltas[-1]} refresh, {len(posts)} creates {problems or ''}")

    final_ok, final_detail = True, ""
    try:
        oauth.refresh_now()
    except Exception as err:
        final_ok, final_detail = False, f"{type(err).__name__}: {err}"
    result.figures.update(
        {
            "rounds": rounds,
            "worker processes": processes,
            "refresh calls per round (histogram)": ", ".join(
                f"{k}: {v}" for k, v in sorted(Counter(refresh_deltas).items())
            ),
            "tasks run": rounds * processes,
            "401 answers": token_401,
            "invalid_grant answers": invalid_grant,
            "spread of the 8 creates (POST /v3/contacts) in a round, median / max, ms": (
                f"{1000 * percentile(spreads, 0.5):.0f} / {1000 * max(spreads or [0]):.0f}"
            ),
            "rounds with a problem": len(failures),
        }
    )
    result.check(
        "exactly one refresh call in every round", all(d == 1 for d in refresh_deltas), refresh_deltas
    )
    result.check("every task succeeded at its first attempt, in every round", not failures, failures[:5])
    result.check("0 invalid_grant and 0 401 answers", invalid_grant == 0 and token_401 == 0)
    result.check(
        "the stored refresh token is the newest (one more refresh with it succeeds)", final_ok, final_detail
    )


# -- 3. lost write ------------------------------------------------------------------------------------


def lost_write(rig: Rig, quick: bool, result: Result) -> None:
    count = 5 if quick else 20
    answer_wait = 6.0
    result.injected = [
        f"token endpoint fault `timeout` at probability 1.0 for the first refresh: CC rotates the refresh "
        f"token but answers only after {answer_wait:.0f} s, past the client's read timeout "
        f"({SCALED['READ_TIMEOUT']:.0f} s); the fault is then switched off",
        "variant `answer lost`: the worker survives and gives up reading; variant `worker killed`: the pool "
        "process waiting for the answer (found by its open connection to the sandbox) is SIGKILLed by "
        "process id",
        f"{count} signups per variant, one prefork worker with 2 processes (started afresh for each variant; "
        "the second process waits for the connection row's lock meanwhile), beat sweeping every second",
        "reconnect: `cc_sync.oauth.store_grant(sandbox.issue_tokens())`, what the admin's Reconnect ends with",
    ]
    sandbox = rig.start_sandbox(refresh_tokens="rotating", timeout_seconds=answer_wait, api_rate=20)
    rig.configure(API_RATE=20.0)
    worker = rig.start_worker("w1", concurrency=2)
    rig.start_beat()
    secrets_seen: list[str] = []
    all_addresses: list[str] = []
    for variant in ("answer lost", "worker killed"):
        label = f"[{variant}] "
        if variant != "answer lost":
            worker.stop()
            rig.restart(worker)
        worker.wait_ready()
        rig.wait_consumers(1, 60)
        tokens = rig.connect()
        secrets_seen += [tokens["access_token"], tokens["refresh_token"]]
        rig.expire_stored_token()
        mails_before = rig.reconnect_mails()
        log_start = len(sandbox.requests())
        sandbox.configure(token_faults={"timeout": 1.0})
        addresses = emails(f"lost-{variant.split()[1]}-", count)
        all_addresses += addresses
        for address in addresses:
            enqueue_signup(address)

        def lost_entry(log_start: int = log_start) -> dict[str, Any] | None:
            for entry in sandbox.requests()[log_start:]:
                if entry["kind"] == "token" and entry["fault"] == "timeout" and entry["status"] == 200:
                    return entry
            return None

        lost = None
        with suppress(TimedOut):  # a timeout is the failed check below
            lost = wait_until(lost_entry, 60, interval=0.02, what="CC's held-back answer")
        sandbox.configure(token_faults={})
        if not result.check(f"{label}CC rotated the refresh token and the answer was held back", lost):
            return
        rig.note(f"{label}refresh token rotated at CC, answer held back")
        killed = ""
        if variant == "worker killed":
            waiting = None
            with suppress(TimedOut):
                waiting = wait_until(
                    lambda: worker.child_connected_to(sandbox.port),
                    2,
                    interval=0.02,
                    what="the pool process waiting for CC's answer",
                )
            if waiting:
                os.kill(waiting, signal.SIGKILL)
                killed = f"pool process {waiting}"
                rig.note(f"SIGKILL pool process {waiting} while CC holds the rotated token")
            result.check(f"{label}the pool process waiting for CC's answer was killed", waiting)
        became = False
        with suppress(TimedOut):
            became = wait_until(
                lambda: Connection.load().status == Connection.Status.NEEDS_RECONNECT,
                60,
                interval=0.1,
                what="the connection marked needs_reconnect",
            )
        needs_at = time.time()
        entries = sandbox.requests()[log_start:]
        after = [e for e in entries if e["time"] > lost["time"] and e["time"] <= needs_at]
        refreshes_after = [e for e in after if e["kind"] == "token"]
        posts_between = contact_requests(after)
        held = wait_for_statuses(
            rig, lambda c: c.get(Status.WAITING_RECONNECT, 0) == count, SCALED["LEASE"] + 45
        )
        mails = rig.reconnect_mails() - mails_before
        statuses_held = status_counts()
        reconnect_at = time.time()
        fresh = rig.connect()
        secrets_seen += [fresh["access_token"], fresh["refresh_token"]]
        expected = len(all_addresses)
        drained = wait_for_statuses(rig, lambda c, n=expected: c.get(Status.SYNCED, 0) == n, 120)
        drain_time = time.time() - reconnect_at
        rig.note(f"{label}drained {drained} in {drain_time:.1f} s")
        result.figures.update(
            {
                f"{label}killed": killed or "nothing",
                f"{label}token calls after the lost answer until needs_reconnect": ", ".join(
                    f"{e['grant_type']} -> {e['status']} {e['error'] or ''}".strip() for e in refreshes_after
                ),
                f"{label}seconds from the lost refresh call to the next token call": (
                    round(refreshes_after[0]["time"] - lost["time"], 2) if refreshes_after else "none"
                ),
                f"{label}contact API calls between the lost answer and needs_reconnect": len(posts_between),
                f"{label}seconds from the lost answer to needs_reconnect": round(needs_at - lost["time"], 1),
                f"{label}signups held before the reconnect": statuses_held.get(Status.WAITING_RECONNECT, 0),
                f"{label}reconnect mails to admins": mails,
                f"{label}drain after the reconnect, s": round(drain_time, 1),
            }
        )
        gap = refreshes_after[0]["time"] - lost["time"] if refreshes_after else None
        if killed and gap is not None and gap < 1.0:
            result.notes.append(
                f"After the kill the next token call reached CC {gap:.2f} s after the lost one, inside CC's "
                "1/s token limit, so it was answered 429 and the connection was marked needs_reconnect one "
                "attempt later. The shared token budget had forgotten the lost call: "
                "`cc_sync.oauth.refresh_tokens_if` calls the token endpoint inside its `transaction.atomic()` "
                "block, so the slot `cc_sync.ratelimit.reserve` took for it is a savepoint of that transaction "
                "and is rolled back with it when the process dies (the `token` RateLimitState row also stays "
                "locked for the whole HTTP call). Reserving the slot outside the outer transaction (before "
                "`lock_row`, or on a connection of its own) would keep the count of calls CC has seen."
            )
        result.check(f"{label}the connection shows needs_reconnect", became)
        result.check(
            f"{label}the shared token budget counted the call CC received: the next token call came >= 1 s "
            "later (CC allows 1/s)",
            gap is not None and gap >= 1.0,
            f"{gap:.2f} s" if gap is not None else "no later token call",
        )
        result.check(
            f"{label}within one attempt: exactly one refresh call after the lost answer, refused invalid_grant",
            len(refreshes_after) == 1 and refreshes_after[0]["error"] == "invalid_grant",
            [(e["status"], e["error"]) for e in refreshes_after],
        )
        result.check(f"{label}no signup lost: all {count} held until the reconnect", held, statuses_held)
        result.check(f"{label}admins told once (mail to ADMINS)", mails == 1, f"{mails} mails")
        result.check(
            f"{label}everything drained within 2 min of the reconnect", drained, f"{drain_time:.0f} s"
        )
    result.figures.update(store_check(result, sandbox, all_addresses, list_id=rig.list_id))
    synced_rows_check(result, sandbox)
    leaks = rig.leaked([*secrets_seen, *current_tokens()])
    result.check("no token in any log or mail (worker logs, beat log, admin mails)", not leaks, leaks)


# -- 4. the visitor never waits ---------------------------------------------------------------------


def connected_worker_and_beat(rig: Rig, api_rate: float = 20.0) -> tuple[Sandbox, Worker]:
    """The sandbox at ``api_rate`` (cc_sync paced the same), a connection, one worker of 2 processes, beat."""
    sandbox = rig.start_sandbox(api_rate=api_rate)
    rig.configure(API_RATE=api_rate)
    rig.connect()
    worker = rig.start_worker("w1", concurrency=2)
    rig.start_beat()
    worker.wait_ready()
    return sandbox, worker


def signup_urls() -> tuple[str, str]:
    """The signup view and its thank-you URL: the example project's /register/, else cc_sync's own."""
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse("register"), "/register/done/"
    except NoReverseMatch:
        return reverse("cc_sync:signup"), reverse("cc_sync:thanks")


def post_signups(addresses: list[str], concurrency: int, first_ip: int) -> list[tuple[float, int, str]]:
    """POST each address to the real signup view (one visitor, one IP each); (seconds, status, Location)."""
    url, _thanks = signup_urls()
    outcome: list[tuple[float, int, str]] = [(0.0, 0, "")] * len(addresses)

    def visitor(indices: list[int]) -> None:
        client = Client()
        try:
            for index in indices:
                number = first_ip + index
                ip = f"10.{(number >> 16) & 255}.{(number >> 8) & 255}.{number & 255}"
                started = time.perf_counter()
                try:
                    response = client.post(
                        url,
                        {"email": addresses[index], "first_name": "Vera", "consent": "on"},
                        REMOTE_ADDR=ip,
                    )
                    status, location = response.status_code, response.get("Location", "")
                except Exception as err:
                    status, location = 500, type(err).__name__
                outcome[index] = (time.perf_counter() - started, status, location)
        finally:
            if threading.current_thread() is not threading.main_thread():
                connections.close_all()

    if concurrency <= 1:
        visitor(list(range(len(addresses))))
        return outcome
    threads = [
        threading.Thread(target=visitor, args=(list(range(n, len(addresses), concurrency)),))
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def visitor_never_waits(rig: Rig, quick: bool, result: Result) -> None:
    healthy_count, down_count, frozen_count = (20, 100, 20) if quick else (100, 500, 100)
    frozen_visitors = 5
    result.injected = [
        f"phase `healthy`: {healthy_count} submissions with everything up (baseline)",
        f"phase `down`: Redis stopped and the sandbox stopped; {down_count} valid submissions through the "
        "real signup view (Django test client in this process, one visitor IP each)",
        f"phase `frozen`: Redis frozen with SIGSTOP (it accepts connections and never answers) and the "
        f"sandbox stopped; {frozen_count} submissions by {frozen_visitors} concurrent visitors",
        "then Redis and the sandbox come back; one prefork worker (2 processes) and beat",
    ]
    sandbox, worker = connected_worker_and_beat(rig)
    _url, thanks = signup_urls()

    phases: dict[str, list[tuple[float, int, str]]] = {}
    addresses: list[str] = []
    phase_addresses = emails("healthy-", healthy_count)
    addresses += phase_addresses
    phases["healthy"] = post_signups(phase_addresses, 1, 0)
    rig.note("healthy phase done; stopping Redis and the sandbox")
    rig.redis.stop()
    sandbox.stop()
    phase_addresses = emails("down-", down_count)
    addresses += phase_addresses
    phases["down"] = post_signups(phase_addresses, 1, 10_000)
    rig.note("down phase done; Redis back but frozen")
    rig.redis.start()
    rig.redis.freeze()
    phase_addresses = emails("frozen-", frozen_count)
    addresses += phase_addresses
    phases["frozen"] = post_signups(phase_addresses, frozen_visitors, 20_000)
    stored = Signup.objects.count()
    rig.note("frozen phase done; Redis thawed, sandbox restarted")
    recovered_at = time.time()
    rig.redis.thaw()
    sandbox.start()
    drained = wait_for_statuses(
        rig, lambda c: c.get(Status.SYNCED, 0) == len(addresses), 300 if not quick else 180
    )
    drain_time = time.time() - recovered_at

    for name, outcome in phases.items():
        times = [t for t, _s, _l in outcome]
        statuses = Counter(s for _t, s, _l in outcome)
        redirected = sum(1 for _t, s, loc in outcome if s == 302 and loc.endswith(thanks))
        result.figures[f"[{name}] submissions"] = len(outcome)
        result.figures[f"[{name}] answered with the thank-you redirect"] = redirected
        result.figures[f"[{name}] HTTP statuses"] = ", ".join(
            f"{k}: {v}" for k, v in sorted(statuses.items())
        )
        result.figures[f"[{name}] latency p50 / p99 / max, ms"] = (
            f"{1000 * percentile(times, 0.5):.0f} / {1000 * percentile(times, 0.99):.0f} / {1000 * max(times):.0f}"
        )
        limit = 0.3 if name == "healthy" else 1.5
        result.check(
            f"[{name}] every submission answered with the thank-you redirect, no 5xx",
            redirected == len(outcome) and not any(s >= 500 for s in statuses),
            statuses,
        )
        result.check(
            f"[{name}] p99 under {limit} s",
            percentile(times, 0.99) < limit,
            f"{percentile(times, 0.99):.3f} s",
        )
    counts = status_counts()
    result.figures.update(
        {
            "rows stored": stored,
            "final statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            "drain after Redis and the sandbox came back, s": round(drain_time, 1),
            **message_figures(rig, len(addresses)),
        }
    )
    result.check("every valid submission stored", stored == len(addresses), stored)
    result.check("all synced once both are back", drained, counts)
    result.figures.update(store_check(result, sandbox, addresses, list_id=rig.list_id))
    synced_rows_check(result, sandbox)


# -- 5. rate compliance -------------------------------------------------------------------------------


def simulate_midnight(sandbox: Sandbox, cc_resets: bool = True) -> int:
    """What 00:00 UTC does: cc_sync's day count starts again, held rows come due, CC's quota (maybe) resets.

    Rows held for the quota are moved as if the clock had reached their ``next_attempt_at``: that time and
    their last publish (``enqueued_at``) move back by the same amount, so they are due now and their last
    publish is as old as it would be after the hours until midnight. The quota block
    (``RateLimitState.blocked_until``, the time of the next probe) is reached the same way: it becomes now.
    ``cc_resets=False`` leaves the sandbox's quota spent: CC's day has not ended yet. Returns how many rows
    were moved.
    """
    now = timezone.now()
    if cc_resets:
        sandbox.reset_quota()
    RateLimitState.objects.filter(name="api").update(day_count=0)
    RateLimitState.objects.filter(name="api", blocked_until__gt=now).update(blocked_until=now)
    skipped = ExpressionWrapper(F("next_attempt_at") - Value(now), output_field=DurationField())
    return Signup.objects.filter(status=Status.PENDING, next_attempt_at__gt=now).update(
        enqueued_at=Coalesce(F("enqueued_at"), Value(now)) - skipped, next_attempt_at=now
    )


def rate_compliance(rig: Rig, quick: bool, result: Result) -> None:
    total = 200 if quick else 3000
    rate = 20.0 if quick else 4.0
    quota = 100 if quick else 500
    local_limit = quota + 5
    workers = 4
    submit_rate = 100.0 if quick else 20.0
    expiry_every = 10.0 if quick else 90.0
    hold = 5.0 if quick else 10.0
    # Production's 300 s at full size. The quick size drains 100 rows a day at 20/s (a queue of 5 s), so 60 s
    # is still far above any message's wait in the queue: no row is re-published while its message waits.
    requeue_after = 60.0 if quick else 300.0
    probe_interval = 10.0 if quick else 30.0
    late = 3 * probe_interval + 5
    result.injected = [
        f"{total} signups submitted at {submit_rate:g}/s through {workers} Celery worker processes (prefork, "
        "2 pool processes each)",
        f"sandbox: {rate:g} API requests/s (sliding one-second window, 429 above it), 1 token request/s, daily "
        f"quota {quota}; cc_sync: API_RATE {rate:g}, TOKEN_RATE 1, DAILY_LIMIT {local_limit} (a little above "
        "the sandbox's quota, so that both CC's `quota_exceeded` 429 and cc_sync's own budget are hit)",
        f"access tokens live 30 s at the sandbox and are refreshed 10 s before expiry (TOKEN_LEEWAY); the "
        f"sandbox also revokes every access token every {expiry_every:g} s while signups are syncing "
        "(401 -> one refresh by whichever process sees it first)",
        "each simulated midnight (once every remaining row waits for the next day, and after a hold of "
        f"{hold:g} s): the sandbox's `reset_quota()`; the `RateLimitState` row `api` set to 0 requests today; "
        "each held row's `next_attempt_at` set to now and its `enqueued_at` moved back by the same amount "
        "(as if the clock had advanced to that row's retry time). Nothing else is touched",
        f"CC's day ends late once: at the first simulated midnight cc_sync's clock passes its presumed reset "
        f"(00:00 UTC) but the sandbox's quota stays spent for {late:g} s more, and the sandbox revokes the "
        f"access tokens then (so the first probe meets a 401 and a refresh); QUOTA_PROBE_INTERVAL "
        f"{probe_interval:g} s (production: 3600 s)",
        f"REQUEUE_AFTER {requeue_after:g} s (production: 300 s), far above a message's wait in the queue: "
        "with the scaled 5 s of the other scenarios the sweeper would re-publish every row still waiting its "
        "turn every 5 s (see the notes)",
    ]
    sandbox = rig.start_sandbox(api_rate=rate, token_rate=1, daily_quota=quota, token_lifetime=30)
    rig.configure(
        API_RATE=rate,
        TOKEN_RATE=1.0,
        DAILY_LIMIT=float(local_limit),
        TOKEN_LEEWAY=10.0,
        REQUEUE_AFTER=requeue_after,
        QUOTA_PROBE_INTERVAL=probe_interval,
    )
    rig.connect()
    for n in range(workers):
        rig.start_worker(f"q{n}", concurrency=2)
    rig.start_beat()
    rig.wait_consumers(workers, 60)

    queue_peak = 0
    expiries = 0
    last_expiry = time.monotonic()

    def tick() -> None:
        nonlocal queue_peak, expiries, last_expiry
        queue_peak = max(queue_peak, rig.redis.queue_length() or 0)
        if (
            time.monotonic() - last_expiry >= expiry_every
            and Signup.objects.filter(
                status__in=[Status.PENDING, Status.SYNCING], next_attempt_at__lte=timezone.now()
            ).exists()
        ):
            sandbox.expire_access_tokens()
            expiries += 1
            last_expiry = time.monotonic()

    addresses = emails("rate-", total)
    started = time.monotonic()
    submitted = 0
    while submitted < total:
        due = min(total, int((time.monotonic() - started) * submit_rate) + 1)
        while submitted < due:
            enqueue_signup(addresses[submitted])
            submitted += 1
        tick()
        time.sleep(0.05)
    rig.note("all submitted")

    def settled(counts: dict[str, int]) -> bool:
        later = timezone.now() + timedelta(hours=1)
        waiting = Signup.objects.filter(status=Status.PENDING, next_attempt_at__gt=later).count()
        return counts.get(Status.SYNCED, 0) + waiting == total

    per_day: list[int] = []
    moved_total = 0
    during_holds: list[dict[str, Any]] = []
    all_settled = True
    late_window: list[float] = []
    # Each day: the drain at the rate, the quota's block, and the rows told to wait for a probe's answer
    # (cc_sync.ratelimit.PROBE_GRACE plus retry_delay's spread: over MAX_COUNTDOWN, so the sweeper queues
    # them again, REQUEUE_AFTER after their last publish); and the late reset once.
    day_limit = (total / quota) * (quota / rate * 1.5 + 60 + requeue_after + 150) + late + 300
    deadline = time.monotonic() + day_limit
    while True:
        if not wait_for_statuses(rig, settled, max(10.0, deadline - time.monotonic()), tick):
            all_settled = False
            break
        synced = Signup.objects.filter(status=Status.SYNCED).count()
        per_day.append(synced - sum(per_day))
        if synced == total or len(per_day) > total / quota + 2:
            break
        hold_start = time.time()
        time.sleep(hold)
        during_holds += [e for e in sandbox.requests() if e["kind"] == "api" and e["time"] > hold_start]
        if not late_window:
            # cc_sync's presumed reset passes, CC's does not (yet): it must probe sparingly and keep waiting.
            moved = simulate_midnight(sandbox, cc_resets=False)
            # Overnight the access token may have been revoked: the probe then meets a 401 first.
            sandbox.expire_access_tokens()
            late_window.append(time.time())
            rig.note(f"day {len(per_day)}: {per_day[-1]} synced; midnight for cc_sync only, {moved} rows due")
            late_end = time.monotonic() + late
            while time.monotonic() < late_end:
                rig.supervise()
                tick()
                time.sleep(0.5)
            sandbox.reset_quota()
            late_window.append(time.time())
            rig.note(f"CC's quota reset {late:g} s after cc_sync's presumed reset")
        else:
            moved = simulate_midnight(sandbox)
            rig.note(f"day {len(per_day)}: {per_day[-1]} synced; midnight simulated, {moved} rows due now")
        moved_total += moved
    drained = Signup.objects.filter(status=Status.SYNCED).count() == total
    elapsed = time.monotonic() - started

    log = sandbox.requests()
    api = [e for e in log if e["kind"] == "api"]
    token = [e for e in log if e["kind"] == "token"]
    posts = creates(log)
    throttled = [e for e in api if e["status"] == 429 and e["error"] == "throttled"]
    quota_429 = [e for e in api if e["status"] == 429 and e["error"] == "quota_exceeded"]
    counts = status_counts()
    api_max = max_in_any_window([e["time"] for e in api])
    refused_late: list[dict[str, Any]] = []
    resumed_after: float | None = None
    if len(late_window) == 2:
        refused_late = [e for e in api if late_window[0] <= e["time"] <= late_window[1]]
        accepted = [e["time"] for e in api if e["time"] > late_window[1] and e["status"] != 429]
        resumed_after = accepted[0] - late_window[1] if accepted else None
    late_times = [e["time"] for e in refused_late]
    late_gaps = [b - a for a, b in zip(late_times, late_times[1:], strict=False)]
    token_max = max_in_any_window([e["time"] for e in token])
    result.figures.update(
        {
            "signups": total,
            "API requests seen by the sandbox": len(api),
            "most API requests in any 1 s window": api_max,
            "token requests (all refreshes)": len(token),
            "most token requests in any 1 s window": token_max,
            "access-token revocations / 401 answers": f"{expiries} / {sum(1 for e in api if e['status'] == 401)}",
            "unforced 429 (rate)": f"{len(throttled)} ({100 * len(throttled) / max(1, len(api)):.2f} %)",
            "429 quota_exceeded from the sandbox": len(quota_429),
            "synced per simulated day": ", ".join(str(n) for n in per_day),
            "API requests during the holds before each midnight": len(during_holds),
            "held rows made due at the simulated midnights (each gets a new message)": moved_total,
            "creates (POST /v3/contacts)": len(posts),
            "other sync-path requests (lookups, sign_up_form, add_list_memberships)": (
                len(contact_requests(log)) - len(posts)
            ),
            "API requests while CC's day had not ended after cc_sync's presumed reset (status/error)": ", ".join(
                f"{e['status']} {e['error'] or ''}".strip() for e in refused_late
            ),
            "seconds between those requests": ", ".join(f"{g:.1f}" for g in late_gaps),
            "first accepted request after CC's late reset, s after it": (
                round(resumed_after, 1) if resumed_after is not None else "none"
            ),
            "time from the first submission to the last sync, s": round(elapsed, 1),
            "final statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            "peak broker queue length": queue_peak,
            **message_figures(rig, total),
        }
    )
    amplification_note(result, total, requeue_after)
    result.check(f"never more than {rate:g} API requests in any 1 s window", api_max <= rate, api_max)
    result.check("never more than 1 token request in any 1 s window", token_max <= 1, token_max)
    result.check("unforced 429s under 0.5 %", len(throttled) < 0.005 * max(1, len(api)), len(throttled))
    result.check(
        f"the daily quota stopped the sync each day (at most {local_limit} synced a day); the rest waited for "
        "the next day",
        all_settled and len(per_day) > 1 and max(per_day) <= local_limit,
        per_day,
    )
    result.check("no API request while rows waited for the next day", not during_holds, len(during_holds))
    result.check(
        f"CC's day ending {late:g} s after cc_sync's presumed reset: cc_sync probed, kept waiting while CC "
        f"refused, and never sent two requests less than QUOTA_PROBE_INTERVAL ({probe_interval:g} s) apart",
        len(late_window) == 2
        and refused_late
        # Refused: 429, or 401 for a probe that met the revoked token (a refresh, and no probe, follows).
        and all(e["status"] in (401, 429) for e in refused_late)
        and len(refused_late) <= late / probe_interval + 1
        and all(g >= probe_interval - 0.5 for g in late_gaps),
        f"{len(refused_late)} requests {[(e['status'], e['error']) for e in refused_late]}, gaps "
        f"{[round(g, 1) for g in late_gaps]}",
    )
    result.check("everything finished after the resets, nothing lost", drained, counts)
    result.figures.update(store_check(result, sandbox, addresses, list_id=rig.list_id))
    synced_rows_check(result, sandbox)


# -- 6. bad bodies and permanent errors -----------------------------------------------------------


CONTENT_TYPES = {
    "html_200": "text/html; charset=utf-8",
    "empty_200": "application/json",
    "truncated_json": "application/json",
}


class WrongContentType(requests.Session):
    """A session whose JSON requests leave with ``Content-Type: text/plain`` (a broken proxy's doing)."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if "Content-Type" in headers:
            headers["Content-Type"] = "text/plain"
        return super().request(method, url, *args, headers=headers, **kwargs)


def bad_bodies(rig: Rig, quick: bool, result: Result) -> None:
    per_kind = 3 if quick else 10
    kinds = ["html_200", "empty_200", "truncated_json", "missing_contact_id", "error_5xx"]
    result.injected = [
        f"for each of {', '.join(kinds)}: the fault at probability 1.0 on every `/v3` call while a batch of "
        f"{per_kind} signups is submitted and retried at least once; then the faults are switched off",
        "400: a row stored by an earlier cc_sync version with a custom field id that is not a UUID (cc_sync "
        "now refuses it at enqueue; CC wants a UUID); 404: a signup for a list that does not exist",
        "415: one signup processed in this process by `cc_sync.sync.process_signup` with a client session "
        "that sends `Content-Type: text/plain` (what a broken proxy would do)",
        "401: the sandbox revokes every access token (one refresh, then success); 403: a grant without "
        "the `contact_data` scope (held, needs reconnect, then the admin reconnects)",
    ]
    sandbox, worker = connected_worker_and_beat(rig)

    batches: dict[str, list[int]] = {}
    synced_while_bad = 0
    samples: dict[str, str] = {}
    for kind in kinds:
        sandbox.configure(faults={kind: 1.0})
        batches[kind] = [enqueue_signup(a).pk for a in emails(f"{kind.replace('_', '-')}-", per_kind)]
        retried = False
        with suppress(TimedOut):  # a timeout is the failed check below
            retried = wait_until(
                lambda ids=batches[kind]: all(
                    a >= 2 for a in Signup.objects.filter(pk__in=ids).values_list("attempts", flat=True)
                ),
                40,
                interval=0.3,
                what=f"every {kind} signup retried",
            )
        synced_while_bad = max(synced_while_bad, Signup.objects.filter(status=Status.SYNCED).count())
        row = Signup.objects.get(pk=batches[kind][0])
        samples[kind] = row.last_error
        result.check(f"[{kind}] every signup of the batch retried (>= 2 attempts)", retried)
        rig.note(f"{kind}: retried {bool(retried)}; last error {row.last_error[:120]!r}")
    bad_ids = [pk for ids in batches.values() for pk in ids]
    synced_while_bad = max(synced_while_bad, Signup.objects.filter(status=Status.SYNCED).count())
    sandbox.configure(faults={})
    drained = False
    with suppress(TimedOut):
        drained = wait_until(
            lambda: Signup.objects.filter(pk__in=bad_ids, status=Status.SYNCED).count() == len(bad_ids),
            90,
            what="the retried signups synced",
        )
    result.check("no row marked synced while every answer was bad", synced_while_bad == 0, synced_while_bad)
    result.check("all of them synced once the answers were good again", drained)
    # The answers were lost after CC did the work: the retries must find the contact (409, lookup) and
    # never create it twice nor fall back to sign_up_form, CC's upsert, for an address CC already has.
    log = contact_requests(sandbox.requests())
    upserts: dict[str, int] = {}
    for kind in kinds:
        batch = {a.lower() for a in emails(f"{kind.replace('_', '-')}-", per_kind)}
        entries = [e for e in log if (e["email"] or "").lower() in batch]
        paths = Counter(f"{e['method']} {e['path']} {e['status']}" for e in entries)
        result.figures[f"[{kind}] requests of the batch (method path status: count)"] = ", ".join(
            f"{k}: {v}" for k, v in sorted(paths.items())
        )
        upserts[kind] = sum(1 for e in entries if e["path"] == SIGN_UP_PATH)
    result.check(
        "a garbled answer is never read as 'no such contact': no sign_up_form for an address CC already had",
        not any(upserts.values()),
        {k: v for k, v in upserts.items() if v},
    )
    if upserts.get("missing_contact_id"):
        result.notes.append(
            "With `missing_contact_id` (a 200 whose JSON lacks the field the client needs), the lookup "
            "`GET /v3/contacts?email=...` answered `{}` and cc_sync sent `sign_up_form` for an address CC "
            f"already had ({upserts['missing_contact_id']} requests): `cc_sync.client.ConstantContactClient."
            "find_contact` reads a body without a `contacts` array as 'no such contact' (returns None), and "
            "`cc_sync.sync._send_contact` then upserts with the signup's details. For an unsubscribed "
            "contact that would opt them back in without their consent. `find_contact` should raise "
            "`RetryLater` when `contacts` is not a list."
        )
    for kind, text in samples.items():
        result.figures[f"[{kind}] last_error recorded"] = text[:160]
    result.check(
        "the recorded error shows the status, and the content type and first bytes of a non-JSON body",
        all(f"HTTP 200 ({CONTENT_TYPES[k]}" in samples[k] for k in CONTENT_TYPES)
        and "HTTP 50" in samples["error_5xx"],
        {k: v[:100] for k, v in samples.items()},
    )
    if "None" in samples["missing_contact_id"]:
        result.notes.append(
            "For a 200/201 whose JSON body has no `contact_id`, the recorded error reads "
            f"`{samples['missing_contact_id']}`: `cc_sync.client.describe_error` joins "
            "`error_message or error_key` of each object in the body, which is `None` for a success body such "
            'as `{"action": "created"}`, so its fallback (the JSON itself) never applies, and the content '
            "type is only named for non-JSON bodies. The row is correctly not synced and is retried; only the "
            "diagnosis is lost. Skipping objects without `error_message`/`error_key` in that join (so the "
            "JSON fallback applies) would fix it."
        )
    result.check(
        "the recorded error of an answer without the id cc_sync needs shows what CC answered (its JSON body)",
        "{" in samples["missing_contact_id"],
        samples["missing_contact_id"],
    )

    # Permanent errors.
    log_start = len(sandbox.requests())
    with transaction.atomic():
        # cc_sync now refuses a custom field id that is not a UUID at enqueue; a row stored by an earlier
        # version (which accepted any id) still holds one, and CC answers it 400.
        bad_field = enqueue_signup("bad-field@example.com", custom_fields={str(uuid.uuid4()): "blue"})
        Signup.objects.filter(pk=bad_field.pk).update(
            custom_fields=[{"custom_field_id": "favourite-colour", "value": "blue"}]
        )
    with transaction.atomic():
        wrong_type = enqueue_signup("wrong-type@example.com")
        with mock.patch.object(sync, "get_client", lambda: ConstantContactClient(session=WrongContentType())):
            sync.process_signup(wrong_type.pk)
    permanent = {400: bad_field, 415: wrong_type}
    gone_list = str(uuid.uuid4())
    no_list = enqueue_signup("no-such-list@example.com", list_ids=[gone_list])
    with suppress(TimedOut):  # the checks below say which signup did not end as expected
        wait_until(
            lambda: (
                Signup.objects.filter(pk__in=[s.pk for s in permanent.values()], status=Status.FAILED).count()
                == len(permanent)
                and Signup.objects.filter(pk=no_list.pk, status=Status.SYNCED).exists()
            ),
            30,
            what="the permanent errors failed and the missing list's signup synced",
        )
    time.sleep(2 * SCALED["RETRY_MAX"])  # long enough for any retry to have happened
    posts = contact_requests(sandbox.requests()[log_start:])
    for status, signup in permanent.items():
        signup.refresh_from_db()
        tries = [e["status"] for e in posts if (e["email"] or "").lower() == signup.email.lower()]
        result.figures[f"[{status}] status / attempts / CC requests"] = (
            f"{signup.status} / {signup.attempts} / {tries}"
        )
        result.figures[f"[{status}] recorded reason"] = f"{signup.last_error_key}: {signup.last_error[:140]}"
        result.check(
            f"[{status}] tried once and marked failed with CC's reason",
            signup.status == Status.FAILED
            and signup.attempts == 1
            and tries == [status]
            and signup.last_error_key
            and signup.last_error,
            f"{signup.status}, {signup.attempts} attempts, requests {tries}, key {signup.last_error_key!r}",
        )
    # 404 naming a list: CC no longer has the list picked for this signup. cc_sync records the list as
    # missing (after fetching the account's lists to tell) and sends the signup to the default list.
    no_list.refresh_from_db()
    tries = [e["status"] for e in posts if (e["email"] or "").lower() == no_list.email.lower()]
    missing = list(Connection.load().missing_list_ids)
    list_fetches = sum(1 for e in sandbox.requests()[log_start:] if e["path"] == "/v3/contact_lists")
    result.figures["[404] status / attempts / CC requests / missing lists / list fetches"] = (
        f"{no_list.status} / {no_list.attempts} / {tries} / {missing} / {list_fetches}"
    )
    result.check(
        "[404] a list CC does not have: recorded as missing on the connection, the signup sent to the "
        "default list instead (one 404, then the create)",
        no_list.status == Status.SYNCED and tries == [404, 201] and gone_list in missing,
        f"{no_list.status}, requests {tries}, missing {missing}",
    )

    # 401: one refresh, then the retry succeeds.
    calls = sandbox.token_calls("refresh_token")
    log_start = len(sandbox.requests())
    sandbox.expire_access_tokens()
    revoked = enqueue_signup("revoked-token@example.com")
    with suppress(TimedOut):  # the check below says so
        wait_until(lambda: Signup.objects.filter(pk=revoked.pk, status=Status.SYNCED).exists(), 30)
    revoked.refresh_from_db()
    tries = [e["status"] for e in contact_requests(sandbox.requests()[log_start:])]
    refreshes = sandbox.token_calls("refresh_token") - calls
    result.figures["[401] CC requests / refresh calls / status"] = f"{tries} / {refreshes} / {revoked.status}"
    result.check(
        "[401] one refresh, one retry, synced",
        revoked.status == Status.SYNCED and refreshes == 1 and tries[:1] == [401] and len(tries) == 2,
        tries,
    )

    # 403: a grant without contact_data.
    mails = rig.reconnect_mails()
    rig.connect(scope="offline_access account_read")
    log_start = len(sandbox.requests())
    calls = sandbox.token_calls("refresh_token")
    forbidden = enqueue_signup("no-scope@example.com")
    with suppress(TimedOut):
        wait_until(
            lambda: Signup.objects.filter(pk=forbidden.pk, status=Status.WAITING_RECONNECT).exists(), 30
        )
    forbidden.refresh_from_db()
    connection_status = Connection.load().status
    tries = [e["status"] for e in contact_requests(sandbox.requests()[log_start:])]
    told = rig.reconnect_mails() - mails
    rig.connect()
    with suppress(TimedOut):
        wait_until(lambda: Signup.objects.filter(pk=forbidden.pk, status=Status.SYNCED).exists(), 60)
    synced_after = Signup.objects.get(pk=forbidden.pk).status
    result.figures["[403] CC requests / signup / connection / mails / after reconnect"] = (
        f"{tries} / {forbidden.status} / {connection_status} / {told} / {synced_after}"
    )
    result.check(
        "[403] tried once, held (not failed), connection needs_reconnect, admins told, synced after reconnect",
        tries == [403]
        and forbidden.status == Status.WAITING_RECONNECT
        and connection_status == Connection.Status.NEEDS_RECONNECT
        and told == 1
        and synced_after == Status.SYNCED
        and sandbox.token_calls("refresh_token") == calls,
    )
    synced_rows_check(result, sandbox)
    expected = [a for kind in kinds for a in emails(f"{kind.replace('_', '-')}-", per_kind)] + [
        "no-such-list@example.com",
        "revoked-token@example.com",
        "no-scope@example.com",
    ]
    result.figures.update(store_check(result, sandbox, expected, list_id=rig.list_id))


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


# -- running -----------------------------------------------------------------------------------------


SCENARIOS: dict[str, tuple[Callable[[Rig, bool, Result], None], str, str]] = {
    "no_loss": (no_loss, "No loss, no duplicate", "G1"),
    "one_refresh": (one_refresh, "One refresh", "G2"),
    "lost_write": (lost_write, "Lost write", "G3"),
    "visitor_never_waits": (visitor_never_waits, "The visitor never waits", "G4"),
    "rate_compliance": (rate_compliance, "Rate compliance", "G5"),
    "bad_bodies": (bad_bodies, "Bad bodies and permanent errors", "G7, G8"),
}


def run(name: str, quick: bool = False, seed: int = 20240601, keep: bool = False) -> Result:
    """Run one scenario on a fresh rig and return its result (a crash is a failed check, not an exception)."""
    function, title, goal = SCENARIOS[name]
    result = Result(name=name, title=title, goal=goal, quick=quick)
    started = time.monotonic()
    rig = Rig(name, seed=seed, keep=keep)
    try:
        with rig:
            try:
                function(rig, quick, result)
            finally:
                if rig.sandbox is not None:
                    result.settings = rig.settings_record()
                if rig.unexpected_exits:
                    exit_note(rig, result)
            rig.failed = not result.passed
    except Exception:
        result.check("the scenario ran to the end", False, traceback.format_exc(limit=6))
    result.duration = time.monotonic() - started
    return result
