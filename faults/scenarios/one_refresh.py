"""G2, one refresh: processes that find the token stale at the same moment refresh it once."""

from __future__ import annotations

from collections import Counter
from contextlib import suppress

from django.db import transaction

from cc_sync import oauth
from cc_sync.models import Connection, Signup
from cc_sync.sync import enqueue_signup
from rig.deployment import Rig
from rig.figures import percentile
from rig.waiting import TimedOut, wait_until

from .checks import (
    Result,
    Status,
    contact_requests,
    creates,
    emails,
)


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
