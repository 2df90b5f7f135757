"""One separate process asking for an access token at a given moment (for the single-refresh test).

Usage: python -m tests.refresh_probe DB_NAME TOKEN_URL START_AT
Prints the access token it got.
"""

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

db_name, token_url, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
settings.DATABASES["default"]["NAME"] = db_name
settings.CC_SYNC = {
    **settings.CC_SYNC,
    "TOKEN_URL": token_url,
    "CLIENT_ID": sys.argv[4],
    "CLIENT_SECRET": sys.argv[5],
    "TOKEN_RATE": 1.0,
}
django.setup()

from cc_sync.oauth import get_access_token  # noqa: E402

time.sleep(max(0.0, start_at - time.time()))
print(get_access_token(), flush=True)
