"""The benchmarks in their quick sizes: each runs to the end and produces sane figures.

These are not timed tests. The goals of docs/benchmarks.md (latency ratios, drain time, memory growth) are
never asserted here: absolute times drift on shared CI machines. What is asserted is that every benchmark
completes and that its figures make sense (every signup synced, at most a stray 429 in the drain, each
retried, numbers positive).
``python -m bench.run`` runs the full sizes and writes docs/benchmarks.md.

Needs PostgreSQL and Redis on 127.0.0.1 (the ``services`` fixture) and the ``redis-server`` binary; without
them the tests are skipped with the reason printed, and under CI=true that is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from bench import report
from bench.run import available, run_one

pytestmark = [pytest.mark.services, pytest.mark.bench, pytest.mark.usefixtures("services")]


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_visitor(figures: dict[str, Any]) -> None:
    rounds, warmup = figures["rounds"], figures["warmup"]
    assert set(figures["passes"]) == {
        "test client",
        "gunicorn, local-memory cache",
        "gunicorn, Redis cache",
        "gunicorn, Redis cache, frozen broker",
    }
    for stack, run in figures["passes"].items():
        for name, latency in run["latency"].items():
            assert latency["n"] == rounds, (stack, name)
            assert positive(latency["p50_ms"]) and latency["p99_ms"] >= latency["p50_ms"], (
                stack,
                name,
                latency,
            )
        assert run["statuses"] == {name: {302: rounds} for name in run["latency"]}, stack
        assert positive(run["ratio_p50_vs_plain"]) and positive(run["speedup_p50_vs_synchronous"])
        if stack != "test client":
            assert set(run["cpu_ms_per_request"]) == set(run["latency"]), stack
    stored, marked = figures["cc_sync_rows_stored"], figures["cc_sync_rows_marked"]
    # Every cc_sync signup of every pass (warm-up rounds included) was stored; with a working broker each
    # message reached it (nothing else did). With the frozen broker the rows stay marked for the sweeper,
    # but those whose publish timed out (the example project's 5 s socket timeout), which are unmarked.
    assert stored == dict.fromkeys(stored, rounds + warmup)
    frozen = figures["frozen_prefix"]
    assert {p: n for p, n in marked.items() if p != frozen} == {
        p: n for p, n in stored.items() if p != frozen
    }
    assert 0 < marked[frozen] <= stored[frozen]
    assert figures["cc_sync_rows_published"] >= (len(stored) - 1) * (rounds + warmup)
    assert figures["messages_in_queue"] == figures["cc_sync_rows_published"]
    assert all(q["per_request"] >= 1 for q in figures["queries"].values())
    assert figures["queries"]["cc_sync"]["per_request"] == 1


def check_drain(figures: dict[str, Any]) -> None:
    for case in figures["cases"]:
        assert case["drained"], case
        # Zero 429 is the benchmark's goal, reported by bench.run; a loaded CI host can delay a request past
        # the pacing margin, so the quick run allows what G5 of the reliability goals allows (under 0.5 %,
        # at least one), and checks that each 429 was retried once and no contact was posted twice.
        assert case["api_429"] <= max(1, case["signups"] // 200), case
        # Every address is new: one create (POST /v3/contacts) each, and one more per 429.
        assert case["creates"] == case["signups"] + case["api_429"], case
        assert positive(case["drain_s"]) and positive(case["achieved_rate"]), case
        assert case["max_in_one_second"] <= case["rate"], case
        assert 0 < case["share_of_limit"] <= 1, case
    cost = figures["cost"]
    assert cost["all_synced"], cost
    assert positive(cost["bare_over_cc_sync"]), cost
    # A count, not a time: the worker path's SQL statements per synced signup (issue 15's goal).
    assert 0 < cost["sql_per_signup"] <= 5, cost


def check_overhead(figures: dict[str, Any]) -> None:
    for name, run in figures["runs"].items():
        assert run["all_synced"], name
        assert run["posts"] == run["contacts"], name
        assert positive(run["contacts_per_s"]), name
        assert all(value >= 0 for value in run["cpu_ms_per_contact"].values()), name
    profile = figures["profile"]
    assert positive(profile["queries_per_task"])
    assert positive(profile["ms_per_task_in_process"])
    assert profile["areas"][0]["ms_per_task"] > 0
    assert positive(figures["bare_over_cc_sync"])


def check_tokens(figures: dict[str, Any]) -> None:
    ours, theirs = figures["cc_sync"], figures["refresh_every_call"]
    assert ours["all_synced"], ours
    assert ours["refresh_calls"] >= 1, ours  # the day holds one expiry
    assert ours["token_429"] == 0 and ours["api_401"] == 0, ours
    assert theirs["posted"] == theirs["signups"], theirs
    assert theirs["refresh_calls"] >= theirs["signups"], theirs
    assert positive(figures["ratio"])


def check_memory(figures: dict[str, Any]) -> None:
    assert figures["all_synced"]
    for reading in figures["readings"]:
        assert positive(reading["main_kib"]), reading
        assert reading["pool_kib"] and all(positive(kib) for kib in reading["pool_kib"].values()), reading
    assert math.isfinite(figures["pool_growth"])


def check_cases(figures: dict[str, Any]) -> None:
    cases = {case["case"]: case for case in figures["cases"]}
    for name, case in cases.items():
        assert case["requests_min"] >= 1 and case["signups"] > 0, name
    # What each case must end as: synced, or held for the person's confirmation (with an email each).
    held = cases["existing, unsubscribed: held"]
    assert held["statuses"] == {"awaiting_confirmation": held["signups"]}, held
    assert held["confirmation_mails"] == held["signups"], held
    for name, case in cases.items():
        if name != "existing, unsubscribed: held":
            assert case["statuses"] == {"synced": case["signups"]}, case
    # The costs docs/signups.md documents (a difference is a finding for that page or for cc_sync).
    assert figures["as_documented"], [
        (c["case"], c["requests_mean"], c["documented"]) for c in cases.values()
    ]


def check_surge(figures: dict[str, Any]) -> None:
    bulk, single = figures["surge"], figures["one_by_one"]
    # Every signup of the burst reached the list through a handful of requests; the first tasks sent nothing.
    assert bulk["in_list"] == bulk["synced"] == figures["signups"], bulk
    assert bulk["import_requests"] == 1 and bulk["requests"] <= 10, bulk
    assert bulk["stepped_aside"] == bulk["first_tasks"] and bulk["first_tasks_sent"] == 0, bulk
    assert single["synced"] == single["measured_signups"] and single["requests"] >= single["synced"], single
    assert single["quota_days"] >= 1 and positive(single["estimated_seconds_at_pacing"])
    assert positive(single["rate_per_second"]) and positive(figures["request_ratio"])


def check_keepalive(figures: dict[str, Any]) -> None:
    # Both ways ask CC once for each due connection and for nothing else, inside the beat cycle. At most one
    # token request per application in any second and no 429 is the goal, reported by bench.run; a loaded CI
    # host can delay a request past the token slot's margin, so the quick run allows one 429 (that connection
    # is then left for the next cycle) and checks that nothing else went wrong.
    for name in ("keep_alive", "one_after_another"):
        run = figures[name]
        due = run["connections_due"]
        assert run["refresh_calls"] == due and run["not_due_touched"] == 0, (name, run)
        assert run["token_429"] <= 1 and run["refreshed"] + run["token_429"] == due, (name, run)
        assert run["refreshed_once"] or run["token_429"], (name, run)
        assert run["lists_checked"] == run["refreshed"], (name, run)
        assert run["token_max_per_app_in_1s"] <= 1 + run["token_429"], (name, run)
        assert run["api_max_per_app_in_1s"] <= 4 and run["api_429"] == 0, (name, run)
        assert 0 < run["wall_s"] < run["cycle_s"] and len(run["per_app"]) > 1, (name, run)
    assert positive(figures["speedup"])


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "visitor": check_visitor,
    "drain": check_drain,
    "overhead": check_overhead,
    "tokens": check_tokens,
    "memory": check_memory,
    "cases": check_cases,
    "surge": check_surge,
    "keepalive": check_keepalive,
}


@pytest.mark.parametrize("name", list(available()))
def test_benchmark_completes_in_its_quick_size_with_sane_figures(name: str, rig_services: None) -> None:
    result = run_one(name, quick=True)
    print(report.text_summary(result))
    assert "error" not in result, result.get("error")
    assert result["title"] and result["markdown"].strip()
    assert isinstance(result["figures"], dict) and result["figures"]
    if name in CHECKS:
        CHECKS[name](result["figures"])
