"""The bare-HTTP side of the overhead benchmark: one process creating contacts (``POST /contacts``) in a loop.

    python -m bench.bare API_URL TOKEN LIST_ID PREFIX FIRST COUNT START_AT {session|fresh}

Posts the bodies cc_sync posts for COUNT new addresses (emails PREFIX + number), starting at the Unix time
START_AT, with one ``requests.Session`` for the whole loop (``session``) or a new one per request
(``fresh``, as cc_sync's ``get_client()`` does per task). Prints one JSON line: statuses, seconds, CPU.
No Django, no database, no broker: the least any client can do per contact.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import requests


def create_body(email: str, list_id: str, first_name: str, last_name: str) -> dict[str, Any]:
    """The ``POST /v3/contacts`` body cc_sync sends for a new address with these fields
    (``cc_sync.sync.create_body_for``), for the baselines that call CC without cc_sync."""
    return {
        "email_address": {"address": email, "permission_to_send": "explicit"},
        "create_source": "Contact",
        "list_memberships": [list_id],
        "first_name": first_name,
        "last_name": last_name,
    }


def main(argv: list[str]) -> int:
    api_url, token, list_id, prefix, first, count, start_at, mode = argv
    first_n, count_n = int(first), int(count)
    url = api_url.rstrip("/") + "/contacts"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "bench-bare", "Accept": "application/json"}
    session = requests.Session()
    statuses: Counter[int] = Counter()
    delay = float(start_at) - time.time()
    if delay > 0:
        time.sleep(delay)
    cpu_start, started = time.process_time(), time.monotonic()
    for n in range(first_n, first_n + count_n):
        payload = create_body(f"{prefix}{n:06d}@example.com", list_id, "Bench", f"Mark{n}")
        if mode == "fresh":
            with requests.Session() as fresh:
                response = fresh.post(url, json=payload, headers=headers, timeout=(5, 20))
        else:
            response = session.post(url, json=payload, headers=headers, timeout=(5, 20))
        response.json()
        statuses[response.status_code] += 1
    print(
        json.dumps(
            {
                "statuses": dict(statuses),
                "seconds": time.monotonic() - started,
                "cpu": time.process_time() - cpu_start,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
