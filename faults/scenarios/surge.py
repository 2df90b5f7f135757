"""G1 in surge mode: bursts taken in bulk imports while CC fails, workers are killed and the broker goes away."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from contextlib import suppress

from cc_sync import surge as surge_mode
from cc_sync.models import Signup, SurgeBatch
from cc_sync.sandbox.activities import ACTIVITY_PREFIX, IMPORT_PATH
from cc_sync.sandbox.faults import PROCESSED_FAULTS
from cc_sync.sync import enqueue_signup
from rig.database import status_counts
from rig.deployment import Rig
from rig.processes import Worker
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
    two_workers_and_beat,
)

Batch = SurgeBatch.Status
# Statuses a signup ends a wave in: sent, refused for good, or waiting for its confirmation email (the
# address unsubscribed at CC, which an import never re-subscribes).
SETTLED = (Status.SYNCED, Status.FAILED, Status.AWAITING_CONFIRMATION)
# The page the signups come from, as a form's would: the confirmation links are built on it.
FORM_PAGE = "https://www.example.com/register/"


def surge(rig: Rig, quick: bool, result: Result) -> None:
    waves = 2 if quick else 3
    per_wave = 150 if quick else 1000
    threshold = 50 if quick else 200
    existing_every, unsubscribed_every = 15, 40  # of each wave's addresses
    trickle = 10 if quick else 40
    outage = 8.0 if quick else 20.0
    api_rate = 20.0
    import_polls = 4  # CC takes 4 polls (POLL_INTERVAL apart) to finish an import: kills land mid-import
    wave_limit = 150.0 if quick else 300.0
    faults = {"error_5xx": 0.10, "timeout": 0.05, "drop": 0.03, "throttle": 0.03, "html_200": 0.02}
    disruptions = [
        "kill both workers' main processes a seeded 1-10 s after CC accepted the wave's import",
        f"the broker (the rig's Redis, no persistence) stopped for {outage:.0f} s as the burst starts; once it "
        "is back, every `/v3` answer is lost (CC did the work) until an import's answer has been lost",
        "kill every pool process of both workers a seeded 1-10 s after CC accepted the wave's import",
    ][:waves]
    result.injected = [
        f"{waves} bursts of {per_wave} signups through `enqueue_signup` as fast as it takes them, each burst once "
        f"the one before has settled; SURGE_IMPORT on, SURGE_THRESHOLD {threshold}",
        f"in each burst, every {existing_every}th address already a contact at CC with names of its own, every "
        f"{unsubscribed_every}th a contact who unsubscribed",
        *(f"burst {n}: {what}" for n, what in enumerate(disruptions, start=1)),
        f"then {trickle} signups at 2/s, steady traffic",
        "sandbox faults on every `/v3` call (the import and its polls included): 10 % 5xx, 5 % answered after "
        "2x the client's read timeout (CC did the work), 3 % dropped connections, 3 % 429, 2 % 200 with an HTML "
        f"body (CC did the work); imports finish at CC's {import_polls}th poll",
        f"2 prefork workers x 3 processes, beat sweeping every second; API rate {api_rate:.0f}/s on both sides",
    ]
    sandbox = rig.start_sandbox(
        api_rate=api_rate,
        faults=faults,
        import_polls=import_polls,
        timeout_seconds=2 * SCALED["READ_TIMEOUT"],
    )
    rig.configure(API_RATE=api_rate, SURGE_IMPORT=1.0, SURGE_THRESHOLD=threshold)
    tokens = rig.connect()
    workers = two_workers_and_beat(rig)
    rng = random.Random(rig.seed)

    addresses: list[str] = []
    existing: dict[str, tuple[str, str]] = {}
    unsubscribed: list[str] = []
    events: list[str] = []
    wave_figures: list[str] = []
    for wave in range(waves):
        batch = emails(f"s{wave}-", per_wave)
        for n, address in enumerate(batch):
            if n % unsubscribed_every == unsubscribed_every - 1:
                sandbox.add_contact(address, permission_to_send="unsubscribed")
                unsubscribed.append(address)
            elif n % existing_every == 0:
                names = ("Kept", f"Name{wave}x{n}")
                sandbox.add_contact(address, first_name=names[0], last_name=names[1])
                existing[address] = names
        addresses += batch
        started = time.time()
        last_batch = SurgeBatch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        if wave == 1:
            rig.redis.stop()
            events.append(f"broker stopped at {started - rig.started:.0f} s")
            rig.note("redis stopped (queue wiped) as the burst starts")
        for address in batch:
            enqueue_signup(address, first_name="Stranger", last_name="Given", source_url=FORM_PAGE)
        if wave == 1:
            time.sleep(max(0.0, started + outage - time.time()))
            rig.redis.start()
            events.append(f"broker back at {time.time() - rig.started:.0f} s")
            rig.note("redis started again")
            events.append(_lose_an_import_answer(rig, faults))
        elif wave in (0, 2):
            events.append(_kill_during_import(rig, workers, rng, last_batch, kill_children=wave == 2))
        settled = _wait_settled(rig, batch, wave_limit)
        spent = time.time() - started
        wave_figures.append(f"{spent:.0f} s" + ("" if settled else " (not settled)"))
        rig.note(f"burst {wave + 1} settled: {settled} after {spent:.0f} s; statuses {status_counts()}")

    # Steady traffic after the surges: below the threshold, once no import task is left in the queue (its first
    # round would take what is due) and each process's cached decision has expired.
    with suppress(TimedOut):
        wait_until(
            lambda: (
                rig.redis.queue_length() == 0
                and not SurgeBatch.objects.filter(status__in=SurgeBatch.UNFINISHED).exists()
            ),
            60.0,
            interval=0.5,
            what="an empty queue",
        )
    time.sleep(2 * surge_mode.CHECK_INTERVAL)
    steady = emails("steady", trickle)
    for address in steady:
        enqueue_signup(address, first_name="Steady", last_name="Visitor", source_url=FORM_PAGE)
        time.sleep(0.5)
    addresses += steady
    steady_settled = _wait_settled(rig, steady, wave_limit)

    log = sandbox.requests()
    api = [e for e in log if e["kind"] == "api"]
    imports = [e for e in api if e["path"] == IMPORT_PATH]
    # CC took an import when the sandbox processed it: no fault, or a fault that only garbles the answer.
    taken = [e for e in imports if e["status"] in (200, 201) or e["fault"] in PROCESSED_FAULTS]
    lost_answers = sum(1 for e in taken if e["fault"] in PROCESSED_FAULTS)
    polls = sum(1 for e in api if e["path"].startswith(ACTIVITY_PREFIX) and e["method"] == "GET")
    one_by_one = Counter(f"{e['method']} {e['path']}" for e in contact_requests(api))
    batches = list(SurgeBatch.objects.values("activity_id", "status", "signup_ids"))
    recorded = {b["activity_id"] for b in batches if b["activity_id"]}
    state = sandbox.state()
    activities = {a["activity_id"]: a for a in state["activities"]}
    kills = sum(1 for e in events if e.startswith("SIGKILL"))
    kill_waves = sum(1 for wave in range(waves) if wave != 1)
    on_imports = Counter(
        e["fault"]
        for e in api
        if e["fault"] and (e["path"] == IMPORT_PATH or e["path"].startswith(ACTIVITY_PREFIX))
    )
    counts = status_counts()
    rows = list(Signup.objects.values("email", "status", "contact_id", "surge_batch__status"))
    by_email = {r["email"].lower(): r for r in rows}
    bulk_synced = [r for r in rows if r["status"] == Status.SYNCED and not r["contact_id"]]
    quiet = set(unsubscribed)

    result.figures.update(
        {
            "signups submitted (bursts + steady)": f"{per_wave * waves} + {trickle}",
            "time from each burst's start until all its signups settled": ", ".join(wave_figures),
            "disruptions": "; ".join(events),
            "imports CC took / whose answer was lost to a fault / batches that recorded an activity id": (
                f"{len(taken)} / {lost_answers} / {len(recorded)}"
            ),
            "import requests in all (failed ones included)": len(imports),
            "activity polls": polls,
            "one-by-one requests (creates, lookups, list additions)": ", ".join(
                f"{k} {v}" for k, v in sorted(one_by_one.items())
            ),
            "API requests in all / per signup": f"{len(api)} / {len(api) / len(addresses):.2f}",
            "signups synced in bulk / one by one": (
                f"{len(bulk_synced)} / {counts.get(Status.SYNCED, 0) - len(bulk_synced)}"
            ),
            "surge batches by status": ", ".join(
                f"{k} {v}" for k, v in sorted(Counter(b["status"] for b in batches).items())
            ),
            "injected faults": ", ".join(
                f"{k} {v}" for k, v in sorted(Counter(e["fault"] for e in api if e["fault"]).items())
            ),
            "faults on imports and activity polls": ", ".join(
                f"{k} {v}" for k, v in sorted(on_imports.items())
            ),
            "unforced 429 (sandbox rate limit)": sum(1 for e in api if e["status"] == 429 and not e["fault"]),
            "final statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        }
    )
    expected_synced = [a for a in addresses if a not in quiet]
    not_synced = [a for a in expected_synced if by_email[a.lower()]["status"] != Status.SYNCED]
    result.check(
        f"all {len(expected_synced)} signups of addresses CC may mail synced, after every burst settled",
        not not_synced and len(rows) == len(addresses),
        f"{len(not_synced)} not synced: {not_synced[:5]}; rows {len(rows)} of {len(addresses)}",
    )
    woken = [
        c["email_address"]
        for c in state["contacts"]
        if c["email_address"] in quiet
        and (c["permission_to_send"] != "unsubscribed" or c["list_memberships"])
    ]
    held = [a for a in unsubscribed if by_email[a.lower()]["status"] != Status.AWAITING_CONFIRMATION]
    mails = "\n".join(rig.mails())
    unasked = [a for a in unsubscribed if a not in mails]
    result.check(
        f"none of the {len(unsubscribed)} unsubscribed contacts re-subscribed or put on a list; each was emailed "
        "a confirmation link and its signup waits for it",
        not woken and not held and not unasked,
        f"re-subscribed {woken[:5]}, not awaiting confirmation {held[:5]}, not emailed {unasked[:5]}",
    )
    result.figures.update(store_check(result, sandbox, addresses))
    off_list = [
        c["email_address"]
        for c in state["contacts"]
        if c["email_address"] not in quiet and rig.list_id not in c["list_memberships"]
    ]
    result.check(
        "each of the others on cc_sync's list at CC", not off_list, f"{len(off_list)}: {off_list[:5]}"
    )
    renamed = [
        c["email_address"]
        for c in state["contacts"]
        if c["email_address"] in existing
        and (c.get("first_name"), c.get("last_name")) != existing[c["email_address"]]
    ]
    result.check(
        f"the {len(existing)} existing contacts kept their own names (a stranger's signup never overwrites them)",
        not renamed,
        f"{len(renamed)}: {renamed[:5]}",
    )
    unfinished = [
        b["activity_id"]
        for b in batches
        if b["status"] == Batch.COMPLETED
        and b["activity_id"]
        and (activities.get(b["activity_id"]) or {}).get("state") != "completed"
    ]
    orphans = [r["email"] for r in bulk_synced if r["surge_batch__status"] != Batch.COMPLETED]
    result.check(
        "every signup synced in bulk belongs to a batch whose activity CC reports completed",
        not unfinished and not orphans,
        f"batches {unfinished[:5]}, signups {orphans[:5]}",
    )
    # Signups synced one by one carry the contact id CC answered with; those synced in bulk have none.
    synced_rows_check(
        result,
        sandbox,
        "one by one: ",
        Signup.objects.filter(status=Status.SYNCED).exclude(contact_id=""),
    )
    result.check(
        "no batch imported again once its activity id was saved: imports CC took <= batches with an activity "
        "id + answers lost to a fault + imports cut short by a kill",
        len(taken) <= len(recorded) + lost_answers + kills and recorded <= set(activities),
        f"{len(taken)} taken, {len(recorded)} recorded, {lost_answers} answers lost, {kills} kills; "
        f"recorded ids unknown to CC: {sorted(recorded - set(activities))[:3]}",
    )
    result.check(
        "the steady signups after the surges went one by one",
        steady_settled
        and not Signup.objects.filter(email__in=steady, surge_batch__isnull=False).exists()
        and all(by_email[a.lower()]["status"] == Status.SYNCED for a in steady),
        Counter(by_email[a.lower()]["status"] for a in steady),
    )
    result.check(
        "every disruption happened: the kills while CC worked on an import, the broker outage, a lost import answer",
        kills == kill_waves
        and sum(1 for e in events if e.startswith("broker")) == (2 if waves > 1 else 0)
        and any(e.startswith("an import's answer lost") for e in events) == (waves > 1),
        events,
    )
    leaks = rig.leaked([tokens["access_token"], tokens["refresh_token"], *current_tokens()])
    result.check("no token in any log or mail of the run", not leaks, leaks)


def _kill_during_import(
    rig: Rig, workers: list[Worker], rng: random.Random, after_batch: int, kill_children: bool
) -> str:
    """Once CC has accepted an import of this burst, wait a seeded 1-10 s (CC is still working on it) and kill:
    both workers' main processes (restarted 1 s later, as a supervisor would), or every pool process."""
    try:
        wait_until(
            lambda: SurgeBatch.objects.filter(pk__gt=after_batch).exclude(activity_id="").exists(),
            90.0,
            interval=0.1,
            what="an import of this burst accepted by CC",
        )
    except TimedOut:
        return "no import of this burst was accepted within 90 s: nothing killed"
    time.sleep(rng.uniform(1.0, 10.0))
    at = time.time() - rig.started
    if kill_children:
        pids = [pid for worker in workers for pid in worker.children()]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        rig.note(f"SIGKILL every pool process {pids}")
        return f"SIGKILL {len(pids)} pool processes at {at:.0f} s"
    pids = [worker.kill() for worker in workers]
    time.sleep(1.0)
    for worker in workers:
        rig.restart(worker)
    rig.note(f"SIGKILL both workers' main processes {pids}; restarted")
    return f"SIGKILL both workers' main processes at {at:.0f} s"


def _lose_an_import_answer(rig: Rig, faults: dict[str, float]) -> str:
    """Make every ``/v3`` answer late (CC does the work, the client gives up) until CC has taken an import whose
    answer was lost that way, then go back to ``faults``."""
    assert rig.sandbox is not None
    sandbox = rig.sandbox
    seen = len(sandbox.requests())
    sandbox.configure(faults={"timeout": 1.0})
    try:
        wait_until(
            lambda: (
                rig.supervise(),
                any(e["path"] == IMPORT_PATH and e["fault"] == "timeout" for e in sandbox.requests()[seen:]),
            )[1],
            120.0,
            interval=0.2,
            what="an import answered too late",
        )
        found = True
    except TimedOut:
        found = False
    finally:
        sandbox.configure(faults=faults)
    at = time.time() - rig.started
    return f"an import's answer lost at {at:.0f} s" if found else "no import was sent within 120 s"


def _wait_settled(rig: Rig, addresses: list[str], limit: float) -> bool:
    """Wait until every signup of ``addresses`` has settled (synced, failed or awaiting confirmation)."""
    try:
        return bool(
            wait_until(
                lambda: (
                    rig.supervise(),
                    not Signup.objects.filter(email__in=addresses).exclude(status__in=SETTLED).exists(),
                )[1],
                limit,
                interval=0.5,
                what="the burst's signups settled",
            )
        )
    except TimedOut:
        return False
