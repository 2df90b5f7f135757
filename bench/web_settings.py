"""The example project's settings as gunicorn serves them in the visitor benchmark.

The benchmark's URLs (cc_sync's signup view and the two baselines), and the client address taken from
``X-Forwarded-For`` as a site behind a proxy does: every simulated visitor then has an address of its own,
as in the in-process pass, instead of all coming from 127.0.0.1 and running into the per-address limit.
``BENCH_CACHE_URL`` puts the cache (the submission limits) in Redis, as cc_sync's docs recommend; without
it the cache is Django's default, the local-memory one.
"""

import os

from example_project.settings import *  # noqa: F403

if os.environ.get("BENCH_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["BENCH_CACHE_URL"],
        }
    }

ROOT_URLCONF = "bench.urls"
MIDDLEWARE = ["bench.views.forwarded_for", *MIDDLEWARE]  # noqa: F405
