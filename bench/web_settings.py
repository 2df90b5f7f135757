"""The example project's settings as gunicorn serves them in the visitor benchmark.

The benchmark's URLs (cc_sync's signup view and the two baselines), and the client address taken from
``X-Forwarded-For`` as a site behind a proxy does: every simulated visitor then has an address of its own,
as in the in-process pass, instead of all coming from 127.0.0.1 and running into the per-address limit.
"""

from example_project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
MIDDLEWARE = ["bench.views.forwarded_for", *MIDDLEWARE]  # noqa: F405
