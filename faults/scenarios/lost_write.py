"""G3, lost write: CC rotates the refresh token and its answer never arrives."""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from typing import Any

from cc_sync.models import Connection
from cc_sync.sync import enqueue_signup
from rig.database import status_counts
from rig.deployment import Rig
from rig.timing import SCALED
from rig.waiting import TimedOut, wait_until

from .checks import (
    Result,
    Status,
    contact_requests,
    current_tokens,
    emails,
    store_check,
    synced_rows_check,
    wait_for_statuses,
)


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
