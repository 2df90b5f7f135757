"""G4, the visitor never waits: the signup view answers at once while Redis and CC are down or frozen."""

from __future__ import annotations

import threading
import time
from collections import Counter

from django.db import connections
from django.test import Client

from cc_sync.models import Signup
from rig.database import status_counts
from rig.deployment import Rig
from rig.figures import percentile

from .checks import (
    Result,
    Status,
    connected_worker_and_beat,
    emails,
    message_figures,
    store_check,
    synced_rows_check,
    wait_for_statuses,
)


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
