"""One separate process asking for an access token at a given moment (for the single-refresh tests).

Usage: python -m tests.refresh_probe DB_NAME TOKEN_URL START_AT CLIENT_ID CLIENT_SECRET [SLUGS]
Prints the access token it got; with SLUGS (comma-separated connection slugs), asks for each connection's
token in that order and prints one ``SLUG TOKEN`` line each.
"""

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

db_name, token_url, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
slugs = sys.argv[6].split(",") if len(sys.argv) > 6 else []
settings.DATABASES["default"]["NAME"] = db_name
settings.CC_SYNC = {
    **settings.CC_SYNC,
    "TOKEN_URL": token_url,
    "CLIENT_ID": sys.argv[4],
    "CLIENT_SECRET": sys.argv[5],
    "TOKEN_RATE": 1.0,
}
django.setup()

from cc_sync.models import Connection  # noqa: E402
from cc_sync.oauth import get_access_token  # noqa: E402

time.sleep(max(0.0, start_at - time.time()))
if not slugs:
    print(get_access_token(), flush=True)
for slug in slugs:
    print(slug, get_access_token(Connection.objects.get(slug=slug)), flush=True)
