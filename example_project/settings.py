"""Settings of the example site, read from the environment (see .env.example)."""

from pathlib import Path
from typing import NoReturn

import environ
from django.core.exceptions import ImproperlyConfigured

from cc_sync.schedules import beat_schedule
from example_project.tuning import TUNABLE_SETTINGS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

# Off unless asked for: the demo (example_project/demo.py) turns it on explicitly.
DEBUG = env.bool("DEBUG", default=False)

# The local CC sandbox's application (cc_sync.sandbox); any other CC_CLIENT_ID is a real CC application.
SANDBOX_CLIENT_ID = "sandbox-client-id"
_CLIENT_ID = env("CC_CLIENT_ID", default="")
REAL_CC = bool(_CLIENT_ID) and _CLIENT_ID != SANDBOX_CLIENT_ID
# The fallbacks below only exist so the demo runs with no setup: never with DEBUG off, never with real
# CC credentials (real tokens must not be encrypted with a key printed in this file).
_DEMO_ONLY = "demo-only-" + "insecure-key-change-me"
_DEMO_ENCRYPTION_KEY = "ZGVtby1vbmx5LWtleS1kby1ub3QtdXNlLWluLXByb2Q="
DEMO_FALLBACKS = DEBUG and not REAL_CC


def _required(name: str, what: str) -> NoReturn:
    why = "with real Constant Contact credentials (CC_CLIENT_ID)" if REAL_CC else "with DEBUG off"
    raise ImproperlyConfigured(f"Set {name} in the environment or .env {why}: {what}")


SECRET_KEY = env("SECRET_KEY", default="") or (
    _DEMO_ONLY if DEMO_FALLBACKS else _required("SECRET_KEY", "a long random string, kept secret.")
)
if REAL_CC and SECRET_KEY == _DEMO_ONLY:
    raise ImproperlyConfigured(
        "SECRET_KEY is the demo's published key, and CC_CLIENT_ID is a real Constant Contact application: "
        "set a SECRET_KEY of your own."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
ADMINS = [("Admin", email) for email in env.list("ADMINS", default=[])]

INSTALLED_APPS = [
    "cc_sync",  # before the admin, so the admin shows the "Connect Constant Contact" banner
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "example_project.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process share one file: wait for the write lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# Connections kept CONN_MAX_AGE seconds and checked before reuse. Celery closes a worker's connection after
# every task unless CELERY_DB_REUSE_MAX is set: set both in the workers' environment to save a new database
# connection per signup (docs/celery.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / ".demo" / "mail"))  # for the file backend

# A signup form needs three small fields: refuse big bodies early.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 50

# With no real CC application configured (and DEBUG on), cc_sync's local sandbox stands in for CC:
# `python manage.py cc_sync_sandbox` (the demo starts it). A real CC_CLIENT_ID switches to real CC.
USING_SANDBOX = DEBUG and not env("CC_CLIENT_ID", default="")
_SANDBOX = env("CC_SANDBOX_URL", default="http://127.0.0.1:8765")
_CC_AUTH = (
    f"{_SANDBOX}/oauth2/default/v1"
    if USING_SANDBOX
    else "https://authz.constantcontact.com/oauth2/default/v1"
)
_CC_API = f"{_SANDBOX}/v3" if USING_SANDBOX else "https://api.cc.email/v3"

CC_SYNC = {
    "CLIENT_ID": env("CC_CLIENT_ID", default="sandbox-client-id" if USING_SANDBOX else ""),
    "CLIENT_SECRET": env("CC_CLIENT_SECRET", default="sandbox-client-secret" if USING_SANDBOX else ""),
    "OAUTH_FLOW": env("CC_OAUTH_FLOW", default="authorization_code"),
    "REDIRECT_URI": env("CC_REDIRECT_URI", default=""),
    "LIST_IDS": env.list("CC_LIST_IDS", default=[]),
    "AUTHORIZE_URL": env("CC_AUTHORIZE_URL", default=f"{_CC_AUTH}/authorize"),
    "TOKEN_URL": env("CC_TOKEN_URL", default=f"{_CC_AUTH}/token"),
    "DEVICE_AUTHORIZE_URL": env("CC_DEVICE_AUTHORIZE_URL", default=f"{_CC_AUTH}/device/authorize"),
    "API_URL": env("CC_API_URL", default=_CC_API),
    # Fernet keys, newest first (`python manage.py cc_sync_generate_key --env` makes them and HASH_KEY).
    # Left empty rather than refused here, so that the command that makes them runs; the system check
    # cc_sync.E003 then stops runserver and migrate until they are set.
    "ENCRYPTION_KEYS": env.list("CC_SYNC_ENCRYPTION_KEYS", default=[])
    or ([_DEMO_ENCRYPTION_KEY] if DEMO_FALLBACKS else []),
    # The key of the email and IP hashes (default: SECRET_KEY).
    "HASH_KEY": env("CC_SYNC_HASH_KEY", default=""),
}
if REAL_CC and _DEMO_ENCRYPTION_KEY in CC_SYNC["ENCRYPTION_KEYS"]:
    raise ImproperlyConfigured(
        "CC_SYNC_ENCRYPTION_KEYS holds the demo's published key, and CC_CLIENT_ID is a real Constant Contact "
        "application: make a key with `python manage.py cc_sync_generate_key` and use only your own."
    )
# Optional overrides of cc_sync's timing settings, e.g. for scaled-down test runs.
for _name in TUNABLE_SETTINGS:
    if env.str(f"CC_SYNC_{_name}", default=""):
        CC_SYNC[_name] = env.float(f"CC_SYNC_{_name}")

# Celery: see docs/celery.md for why each of these matters for not losing a signup.
# The default broker is a folder (no server to run) so the demo works anywhere; use Redis or RabbitMQ for real.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=None)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The publish on the visitor's request must fail fast when the broker is down (the sweeper catches up),
# and the visibility timeout must exceed how long a worker holds a message (MAX_COUNTDOWN + LEASE, check
# cc_sync.W005). The same options serve RabbitMQ, whose client ignores the Redis-only ones (docs/celery.md).
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "max_retries": 0,
}
# Where the demo keeps its folder broker, beat schedule and mail.
DEMO_DATA_DIR = Path(env("DEMO_DATA_DIR", default=str(BASE_DIR / ".demo")))
if CELERY_BROKER_URL.startswith("filesystem"):
    _BROKER_DIR = DEMO_DATA_DIR / "broker"
    _BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR),
        "data_folder_out": str(_BROKER_DIR),
        "control_folder": str(_BROKER_DIR / "control"),
    }
CELERY_BEAT_SCHEDULE = beat_schedule(
    queue=CC_SYNC.get("QUEUE"), sweep_interval=env.float("CC_SYNC_SWEEP_INTERVAL", default=60.0)
)

# One handler, on the root logger: cc_sync's records propagate to it and are printed once, also in a Celery
# worker (which replaces the root's handlers with its own). Django's own console handler is left out for the
# same reason; its mails to ADMINS on errors stay. runserver's request lines get the OAuth code masked.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "hide_oauth_query": {"()": "example_project.log_filters.HideOAuthQuery"},
    },
    "formatters": {
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["hide_oauth_query"],
        },
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "cc_sync": {"level": env("CC_SYNC_LOG_LEVEL", default="INFO")},
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}
