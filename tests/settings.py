"""Settings for cc_sync's own tests.

PostgreSQL (127.0.0.1:5432) is used when it answers, as in production; otherwise SQLite, and the tests
that need real services are skipped (an error instead when CI=true, see rig/services.py). The client,
the list and CC's URLs are the rig's test values (rig/constants.py), which the tests expect.
"""

import os

from rig.constants import (
    API_URL,
    AUTHORIZE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    DEVICE_URL,
    LIST_ID,
    REDIRECT_URI,
    TOKEN_URL,
)
from rig.services import POSTGRES, reachable

POSTGRES_AVAILABLE = os.environ.get("CC_SYNC_TEST_DB", "postgres") == "postgres" and reachable(*POSTGRES)

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "cc_sync",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
if POSTGRES_AVAILABLE:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            # pytest-django tests in "test_<NAME>"; set CC_SYNC_TEST_DB_NAME to run suites side by side.
            "NAME": os.environ.get("CC_SYNC_TEST_DB_NAME", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
ADMINS = [("Site admin", "admin@example.com")]

CC_SYNC = {
    "CLIENT_ID": CLIENT_ID,
    "CLIENT_SECRET": CLIENT_SECRET,
    "REDIRECT_URI": REDIRECT_URI,
    "AUTHORIZE_URL": AUTHORIZE_URL,
    "TOKEN_URL": TOKEN_URL,
    "DEVICE_AUTHORIZE_URL": DEVICE_URL,
    "API_URL": API_URL,
    "ENCRYPTION_KEYS": ["pRmgMa8T0INjEAfksaq2aafzoZXEuwKI7wDe4c1F8AY="],
    "LIST_IDS": [LIST_ID],
    # Tests of the form's limits turn them on; elsewhere they would make tests depend on each other.
    "LIMIT_PER_IP": None,
    "LIMIT_PER_EMAIL": None,
    # Unit tests must not sleep on the shared budget.
    "API_RATE": 1000.0,
    "TOKEN_RATE": 1000.0,
}
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = False
