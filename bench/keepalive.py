"""Keep-alive of many connections: one beat cycle refreshing 200 connections spread over several CC applications.

The connections are rows of their own (docs/connecting.md, "Several accounts"), each connected to an account
of the CC sandbox: most use the application in the settings, the others one of a few applications of their
own, several connections each. Every one of them needs a refresh (its access token expired or expires within
``TOKEN_LEEWAY``, or it was not refreshed for ``KEEPALIVE_INTERVAL``) and a check of its lists (due daily, so
every connection refreshed in one cycle is due again in the same cycle a day later: this is the heaviest
cycle of a day). A few connections refreshed an hour ago are mixed in; the cycle must leave them alone.

One cycle runs as beat runs it: the ``cc_sync.keep_connection_alive`` task, published to the rig's Redis and
run by a real worker of the example project. For comparison the same connections are then refreshed the way
keep-alive took them before it interleaved applications: one after another in the order of their primary key
(``keep_alive(connection)`` for each), in a process of the example project of its own. The sandbox enforces
CC's limits (1 token request a second and 4 ``/v3`` requests a second per application) and answers every
``/v3`` request after a CC-like delay; its request log, with each request's arrival time, is what is measured.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import Max
from django.utils import timezone

from cc_sync import oauth, ratelimit
from cc_sync.conf import DEFAULTS, app_settings
from cc_sync.models import Connection
from cc_sync.sandbox import DEFAULT_ACCOUNT, DEFAULT_SCOPE, Sandbox
from cc_sync.schedules import INTERVALS
from cc_sync.tasks import keep_connection_alive
from rig.database import reset_tables
from rig.figures import max_in_any_window
from rig.waiting import TimedOut, wait_until

from .common import ROOT, Rig, Worker, bench_rig, fmt, table, verdict

TITLE = "Keep-alive of many connections"
CYCLE = INTERVALS["cc_sync.keep_connection_alive"]  # beat's keep-alive interval, 3,600 s
LATENCY = 0.25  # CC-like answer time of every /v3 request (as in the drain and surge benchmarks)
API_RATE = 4  # CC's per-second limit per API key, enforced by the sandbox
TOKEN_RATE = 1  # CC's token endpoint: 1 request a second per API key
PRODUCTION_LIMITS = ("API_RATE", "TOKEN_RATE", "DAILY_LIMIT", "TOKEN_LEEWAY")
QUIET = 30.0  # no request at the sandbox for this long: the cycle is over (or stuck)
SETTINGS_APP = "the settings' application"
# Why each connection needs its refresh, in turn: its token expired an hour ago, expires within the leeway,
# or was last refreshed longer ago than KEEPALIVE_INTERVAL (a token that lives longer than CC's 24 h).
REASONS = ("expired", "expiring", "idle")


@dataclass
class Planned:
    slug: str
    account: str
    app: str  # SETTINGS_APP or an own application's client id
    reason: str | None  # None: refreshed an hour ago, not due


def token_slot_gap() -> float:
    """Seconds between two refreshes through one application: the token spacing and a new connection's room."""
    return ratelimit.spacing("token", TOKEN_RATE) + ratelimit.NEW_CONNECTION_HEADROOM


def plan(shared: int, apps: int, per_app: int, shared_fresh: int) -> list[Planned]:
    """The connections, in the order they are created: the settings' application's first, then each own
    application's, each group followed by connections that are not due (one per own application)."""
    rows: list[Planned] = []
    for n in range(shared + shared_fresh):
        slug = Connection.DEFAULT_SLUG if n == 0 else f"shared-{n:03d}"
        account = DEFAULT_ACCOUNT["encoded_account_id"] if n == 0 else f"account-{slug}"
        reason = REASONS[n % len(REASONS)] if n < shared else None
        rows.append(Planned(slug, account, SETTINGS_APP, reason))
    for a in range(1, apps + 1):
        for n in range(per_app + 1):
            slug = f"app{a}-{n:03d}"
            reason = REASONS[(a + n) % len(REASONS)] if n < per_app else None
            rows.append(Planned(slug, f"account-{slug}", f"bench-app-{a}", reason))
    return rows


def age(connections: list[Planned], now: datetime) -> None:
    """Set each stored connection's refresh and list-check times so that exactly the planned ones are due."""
    keepalive = timedelta(seconds=app_settings.KEEPALIVE_INTERVAL)
    leeway = timedelta(seconds=app_settings.TOKEN_LEEWAY)
    day = timedelta(days=1)
    for row in connections:
        if row.reason == "expired":
            expires, refreshed = now - timedelta(hours=1), now - day - timedelta(hours=1)
        elif row.reason == "expiring":
            expires, refreshed = now + leeway / 2, now - day + leeway / 2
        elif row.reason == "idle":
            expires, refreshed = now + timedelta(hours=12), now - keepalive - timedelta(hours=1)
        else:
            expires, refreshed = now + day - timedelta(hours=1), now - timedelta(hours=1)
        checked = now - timedelta(seconds=oauth.LIST_CHECK_INTERVAL + 3600) if row.reason else refreshed
        Connection.objects.filter(slug=row.slug).update(
            expires_at=expires, last_refreshed_at=refreshed, lists_checked_at=checked
        )


def store(sandbox: Sandbox, connections: list[Planned]) -> None:
    """Register the own applications and the accounts in the sandbox and store each connection connected."""
    for client_id in sorted({row.app for row in connections} - {SETTINGS_APP}):
        sandbox.add_app(client_id, f"{client_id}-secret")
    now = timezone.now()
    for row in connections:
        if row.account != DEFAULT_ACCOUNT["encoded_account_id"]:
            sandbox.add_account(row.account, organization_name=f"Client {row.slug}")
        own = row.app != SETTINGS_APP
        tokens = sandbox.issue_tokens(row.app if own else None, account=row.account)
        Connection.objects.update_or_create(
            slug=row.slug,
            defaults={
                "name": row.slug,
                "client_id": row.app if own else "",
                "client_secret": f"{row.app}-secret" if own else "",
                "status": Connection.Status.CONNECTED,
                "access_token": tokens["access_token"],
                "refresh_token": tokens["refresh_token"],
                "scopes": DEFAULT_SCOPE,
                "account_id": row.account,
                "account_name": f"Client {row.slug}",
                "connected_at": now - timedelta(days=30),
            },
        )
    age(connections, now)


def measure(
    sandbox: Sandbox, start: int, connections: list[Planned], started: float, ended: float
) -> dict[str, Any]:
    """The cycle's figures, from the sandbox's request log (entries after ``start``) and the stored rows."""
    entries = sandbox.requests()[start:]
    due = [row for row in connections if row.reason]
    app_of = {row.account: row.app for row in connections}
    refreshes = [e for e in entries if e["kind"] == "token" and e["grant_type"] == "refresh_token"]
    api = [e for e in entries if e["kind"] == "api"]
    per_account = Counter(e["account"] for e in refreshes if e["status"] == 200)
    since = datetime.fromtimestamp(started, tz=dt_timezone.utc)
    stored = {c.slug: c for c in Connection.objects.all()}

    def touched_since(moment: datetime | None) -> bool:
        return moment is not None and moment >= since

    refreshed_rows = [slug for slug, c in stored.items() if touched_since(c.last_refreshed_at)]
    token_times: dict[str, list[float]] = defaultdict(list)
    api_times: dict[str, list[float]] = defaultdict(list)
    token_429: Counter[str] = Counter()
    for entry in refreshes:
        app = app_of.get(entry["account"], str(entry["client_id"]))
        token_times[app].append(entry["time"])
        token_429[app] += entry["status"] == 429
    for entry in api:
        api_times[app_of.get(entry["account"], str(entry["client_id"]))].append(entry["time"])
    per_app: dict[str, dict[str, Any]] = {}
    for app in sorted({row.app for row in connections}, key=lambda name: (name != SETTINGS_APP, name)):
        times = sorted(token_times.get(app, []))
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        per_app[app] = {
            "connections_due": sum(row.app == app for row in due),
            "refresh_calls": len(times),
            "token_max_in_1s": max_in_any_window(times),
            "token_429": token_429.get(app, 0),
            "api_max_in_1s": max_in_any_window(api_times.get(app, [])),
            "token_min_gap_s": min(gaps) if gaps else None,
            "token_span_s": times[-1] - times[0] if times else 0.0,
        }
    biggest = max(info["connections_due"] for info in per_app.values())
    return {
        "connections": len(connections),
        "connections_due": len(due),
        "refreshed": len(refreshed_rows),
        "refresh_calls": len(refreshes),
        "refreshed_once": per_account == Counter({row.account: 1 for row in due}),
        "not_due_touched": sum(
            per_account[row.account] + touched_since(stored[row.slug].last_refreshed_at)
            for row in connections
            if not row.reason
        ),
        "lists_checked": sum(touched_since(stored[row.slug].lists_checked_at) for row in due),
        "wall_s": ended - started,
        "cycle_s": CYCLE,
        "share_of_cycle": (ended - started) / CYCLE,
        "token_max_per_app_in_1s": max(info["token_max_in_1s"] for info in per_app.values()),
        "api_max_per_app_in_1s": max(info["api_max_in_1s"] for info in per_app.values()),
        "token_429": sum(e["status"] == 429 for e in refreshes),
        "api_429": sum(e["status"] == 429 for e in api),
        "api_requests": len(api),
        "pacing_floor_s": (biggest - 1) * token_slot_gap(),
        "per_app": per_app,
    }


def _cycle_over(rig: Rig, due: list[str], since: datetime) -> bool:
    """Every due connection refreshed and its lists checked, or no connection written for ``QUIET`` seconds.

    Read from the database only: reading the sandbox's log takes its lock, and would delay the requests the
    cycle is making.
    """
    rig.supervise()
    rows = Connection.objects.filter(slug__in=due)
    done = rows.filter(last_refreshed_at__gte=since, lists_checked_at__gte=since).count()
    latest = rows.aggregate(latest=Max("updated_at"))["latest"]
    quiet = time.time() - max(since, latest or since).timestamp() > QUIET
    return done == len(due) or quiet


def cycle_in_worker(rig: Rig, sandbox: Sandbox, connections: list[Planned]) -> dict[str, Any]:
    """One beat cycle: the ``keep_connection_alive`` task run by a real worker."""
    due = [row.slug for row in connections if row.reason]
    start = len(sandbox.requests())
    started = time.time()
    since = datetime.fromtimestamp(started, tz=dt_timezone.utc)
    keep_connection_alive.apply_async(queue=app_settings.QUEUE)
    try:
        wait_until(lambda: _cycle_over(rig, due, since), CYCLE, interval=0.5, what="a keep-alive cycle")
    except TimedOut:
        pass
    # The worker's last write of the cycle: the last lists check (or refresh) of a due connection.
    rows = Connection.objects.filter(slug__in=due)
    moments = [
        t.timestamp() for c in rows for t in (c.last_refreshed_at, c.lists_checked_at) if t and t >= since
    ]
    ended = max(moments, default=time.time())
    return measure(sandbox, start, connections, started, ended)


# Keep-alive as it took the connections before it interleaved applications: one after another in primary-key
# order (keep_alive() of one connection is unchanged). Run in a process of the example project of its own, as
# the worker runs the task: not in the benchmark's process, which serves the sandbox.
ONE_AFTER_ANOTHER = """
import time
import django

django.setup()
from cc_sync import oauth
from cc_sync.exceptions import CCSyncError
from cc_sync.models import Connection

print("started", time.time(), flush=True)
for row in Connection.objects.filter(status=Connection.Status.CONNECTED).order_by("pk"):
    try:
        oauth.keep_alive(row)
    except CCSyncError as err:
        print("error", f"{row.slug}: {err}", flush=True)
print("ended", time.time(), flush=True)
"""


def cycle_one_by_one(sandbox: Sandbox, connections: list[Planned], env: dict[str, str]) -> dict[str, Any]:
    """The same connections taken one after another in primary-key order, in a process of their own."""
    start = len(sandbox.requests())
    launched = time.time()
    done = subprocess.run(
        [sys.executable, "-c", ONE_AFTER_ANOTHER],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CYCLE,
        check=False,
    )
    lines = [line.split(" ", 1) for line in done.stdout.splitlines() if " " in line]
    moments = {word: float(rest) for word, rest in lines if word in ("started", "ended")}
    errors = [rest for word, rest in lines if word == "error"]
    if done.returncode or "ended" not in moments:
        errors.append(f"exit code {done.returncode}: {done.stderr.strip()[-500:]}")
    started = moments.get("started", launched)
    figures = measure(sandbox, start, connections, started, moments.get("ended", time.time()))
    figures["errors"] = errors[:5]
    return figures


def run(quick: bool) -> dict[str, Any]:
    shared, apps, per_app, shared_fresh = (8, 2, 2, 1) if quick else (150, 5, 10, 5)
    connections = plan(shared, apps, per_app, shared_fresh)
    with bench_rig("keepalive") as rig:
        sandbox = rig.start_sandbox(
            api_rate=API_RATE, token_rate=TOKEN_RATE, daily_quota=10_000, delay=LATENCY
        )
        # CC's limits on this process's side too (the test settings raise them so that unit tests never wait).
        rig.configure(**{name: float(DEFAULTS[name]) for name in PRODUCTION_LIMITS})
        used = {name: getattr(app_settings, name) for name in (*PRODUCTION_LIMITS, "KEEPALIVE_INTERVAL")}
        try:
            store(sandbox, connections)
            env = rig.env()
            # The example project's visibility timeout (one beat cycle), not the fault suite's 30 s: a task
            # running longer than it would be delivered again.
            env["CELERY_VISIBILITY_TIMEOUT"] = str(int(CYCLE))
            worker = Worker("k1", env, rig.workdir / "worker-k1.log", concurrency=1)
            worker.start()
            rig.workers.append(worker)
            worker.wait_ready()
            rig.wait_consumers(1)
            ours = cycle_in_worker(rig, sandbox, connections)
            age(connections, timezone.now())
            theirs = cycle_one_by_one(sandbox, connections, env)
        finally:
            reset_tables()
    due = ours["connections_due"]
    shared_due = ours["per_app"][SETTINGS_APP]["connections_due"]
    own_due = due - shared_due
    goal_met = (
        ours["refreshed_once"]
        and ours["refreshed"] == due
        and ours["not_due_touched"] == 0
        and ours["wall_s"] < CYCLE
        and ours["token_max_per_app_in_1s"] <= TOKEN_RATE
        and ours["api_max_per_app_in_1s"] <= API_RATE
    )
    speedup = theirs["wall_s"] / ours["wall_s"] if ours["wall_s"] else 0.0

    def row(name: str, key: str, show: Any = str) -> list[str]:
        return [name, show(ours[key]), show(theirs[key])]

    rows = [
        [
            "connections refreshed (due)",
            f"{ours['refreshed']} of {due}",
            f"{theirs['refreshed']} of {due}",
        ],
        row("each refreshed exactly once", "refreshed_once", lambda done: "yes" if done else "NO"),
        row("not-due connections touched", "not_due_touched"),
        row("lists checked", "lists_checked"),
        [
            "wall time of the cycle",
            f"{fmt(ours['wall_s'])} s ({fmt(100 * ours['share_of_cycle'], 1)} % of the {CYCLE:,.0f} s cycle)",
            f"{fmt(theirs['wall_s'])} s ({fmt(100 * theirs['share_of_cycle'], 1)} %)",
        ],
        row("token requests in any 1 s, busiest application", "token_max_per_app_in_1s"),
        row("/v3 requests in any 1 s, busiest application", "api_max_per_app_in_1s"),
        row("token endpoint 429s", "token_429"),
        row("/v3 429s", "api_429"),
    ]
    app_rows = []
    for app, info in ours["per_app"].items():
        other = theirs["per_app"][app]
        app_rows.append(
            [
                app,
                info["connections_due"],
                f"{info['refresh_calls']} / {other['refresh_calls']}",
                f"{info['token_max_in_1s']} / {other['token_max_in_1s']}",
                f"{info['token_429']} / {other['token_429']}",
                f"{fmt(info['token_min_gap_s'] or 0, 2)} / {fmt(other['token_min_gap_s'] or 0, 2)} s",
                f"{info['api_max_in_1s']} / {other['api_max_in_1s']}",
                f"{fmt(info['token_span_s'])} / {fmt(other['token_span_s'])} s",
            ]
        )
    outcome = "met" if goal_met else "NOT met"
    markdown = "\n".join(
        [
            f"{due} connections, each connected to its own CC account, all needing a refresh: {shared_due} on "
            f"the settings' application, {own_due} on {apps} applications of their own ({per_app} each). "
            f"Goal: all {due} refreshed once within one beat cycle, no application's token endpoint above "
            f"1 request/s: **{outcome}**.",
            "",
            table(["", "keep-alive (the beat task, in a worker)", "one after another in key order"], rows),
            "",
            "Per application, keep-alive / one after another:",
            "",
            table(
                [
                    "application",
                    "connections due",
                    "refresh calls",
                    "token requests in any 1 s",
                    "token 429s",
                    "shortest gap between token requests",
                    "/v3 requests in any 1 s",
                    "first to last refresh",
                ],
                app_rows,
            ),
            "",
            f"How it was run: the CC sandbox in the benchmark's process, enforcing {TOKEN_RATE} token request "
            f"a second and {API_RATE} `/v3` requests a second per application and answering every `/v3` "
            f"request after {LATENCY:g} s; cc_sync with its production settings (`TOKEN_RATE` "
            f"{used['TOKEN_RATE']:g}, `API_RATE` {used['API_RATE']:g}, `KEEPALIVE_INTERVAL` "
            f"{used['KEEPALIVE_INTERVAL']:,.0f} s, `TOKEN_LEEWAY` {used['TOKEN_LEEWAY']:g} s). "
            f"{due} connections are due, by turns because their token expired an hour ago, expires within "
            "the leeway, or was last refreshed longer ago than `KEEPALIVE_INTERVAL`; their lists are due a "
            f"check too (daily), and {ours['connections'] - due} connections refreshed an hour ago are mixed "
            "in. They were created application by application (the settings' application's first). "
            "The left column is one cycle of the `cc_sync.keep_connection_alive` task, published to the "
            "rig's Redis and run by a real worker of the example project (one process), timed from the "
            "publish to the worker's last write; the right column takes the same connections, aged again, "
            "one after another in primary-key order (as keep-alive did before it interleaved applications), "
            "in a process of the example project of its own, timed around its loop. Requests are counted by "
            "their arrival at the sandbox.",
            "",
            f"**What bounds the cycle.** The token endpoint allows 1 request a second per application and "
            f"cc_sync spaces its token slots {token_slot_gap():g} s apart "
            f"({ratelimit.spacing('token', TOKEN_RATE):g} s, and {ratelimit.NEW_CONNECTION_HEADROOM:g} s of room "
            f"for the new connection a refresh opens), so {shared_due} "
            f"refreshes on the settings' application cannot span less than {fmt(ours['pacing_floor_s'])} s: "
            f"keep-alive took {fmt(ours['wall_s'])} s. Taken one after another in key order, each own "
            "application's connections also waited for their own application's slot, one after another "
            f"({fmt(theirs['wall_s'])} s, {fmt(speedup, 2)}x as long); keep-alive takes the applications in "
            "turn, so an application's refresh happens while another waits for its slot. The cycle "
            f"grows by {token_slot_gap():g} s per connection on one application: about "
            f"{int(CYCLE / token_slot_gap()):,} connections on one application fill a beat cycle.",
        ]
    )
    if theirs.get("errors"):
        markdown += "\n\nErrors of the one-after-another run: " + "; ".join(theirs["errors"])
    return {
        "title": TITLE,
        "goal": f"all {due} refreshed once within one beat cycle, no application's token endpoint above 1 "
        "request/s",
        "result": f"{ours['refreshed']} of {due} refreshed "
        f"({'each once' if ours['refreshed_once'] else 'NOT each once'}) in {fmt(ours['wall_s'])} s of the "
        f"{CYCLE:,.0f} s cycle; at most {ours['token_max_per_app_in_1s']} token and "
        f"{ours['api_max_per_app_in_1s']} /v3 requests per application in any second; one after another in "
        f"key order: {fmt(theirs['wall_s'])} s",
        "verdict": verdict(goal_met),
        "markdown": markdown,
        "figures": {
            "settings": used,
            "keep_alive": ours,
            "one_after_another": theirs,
            "goal_met": goal_met,
            "speedup": speedup,
        },
    }
