"""Settings for cc_sync's own tests.

PostgreSQL (127.0.0.1:5432) is used when it answers, as in production; otherwise SQLite, and the tests
that need real services are skipped (an error instead when CI=true, see conftest.py).
"""

import os
import socket


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


POSTGRES_AVAILABLE = os.environ.get("CC_SYNC_TEST_DB", "postgres") == "postgres" and _reachable(
    "127.0.0.1", 5432
)

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
    "CLIENT_ID": "test-client-id",
    "CLIENT_SECRET": "test-client-secret",
    "REDIRECT_URI": "https://site.example/admin/cc_sync/connection/callback/",
    "AUTHORIZE_URL": "https://authz.cc.test/oauth2/default/v1/authorize",
    "TOKEN_URL": "https://authz.cc.test/oauth2/default/v1/token",
    "DEVICE_AUTHORIZE_URL": "https://authz.cc.test/oauth2/default/v1/device/authorize",
    "API_URL": "https://api.cc.test/v3",
    "ENCRYPTION_KEYS": ["pRmgMa8T0INjEAfksaq2aafzoZXEuwKI7wDe4c1F8AY="],
    "LIST_IDS": ["07936f78-662a-11eb-af0a-fa163e56c9b0"],
    # Tests of the form's limits turn them on; elsewhere they would make tests depend on each other.
    "LIMIT_PER_IP": None,
    "LIMIT_PER_EMAIL": None,
    # Unit tests must not sleep on the shared budget.
    "API_RATE": 1000.0,
    "TOKEN_RATE": 1000.0,
}
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = False
