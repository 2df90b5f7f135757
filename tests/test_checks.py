"""System checks (cc_sync.E00x / W00x) and the settings accessor."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from cc_sync import checks, conf
from cc_sync.exceptions import CCSyncConfigurationError
from cc_sync.models import Connection
from rig.cc import make_connection
from rig.constants import LIST_ID


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def test_test_settings_pass_every_check(cc_settings, settings, db):
    settings.DEBUG = False
    assert ids(checks.check_settings()) == []
    assert ids(checks.check_installed_apps()) == []
    assert ids(checks.check_https()) == []
    assert ids(checks.check_stored_tokens()) == []


@pytest.mark.parametrize("value", [None, ""])
def test_missing_client_id_is_e001(cc_settings, value):
    if value is None:
        del cc_settings["CLIENT_ID"]
    else:
        cc_settings["CLIENT_ID"] = value
    assert ids(checks.check_settings()) == ["cc_sync.E001"]


def test_missing_secret_with_authorization_code_flow_is_e002(cc_settings):
    del cc_settings["CLIENT_SECRET"]
    assert ids(checks.check_settings()) == ["cc_sync.E002"]
    cc_settings["OAUTH_FLOW"] = "authorization_code"
    cc_settings["CLIENT_SECRET"] = ""
    assert ids(checks.check_settings()) == ["cc_sync.E002"]


@pytest.mark.parametrize("flow", ["pkce", "device"])
def test_missing_secret_with_a_public_application_flow_is_fine(cc_settings, flow):
    del cc_settings["CLIENT_SECRET"]
    cc_settings["OAUTH_FLOW"] = flow
    assert ids(checks.check_settings()) == []


def test_missing_encryption_keys_is_e003(cc_settings):
    del cc_settings["ENCRYPTION_KEYS"]
    assert ids(checks.check_settings()) == ["cc_sync.E003"]


@pytest.mark.parametrize(
    "keys",
    [[], "", ["not-a-fernet-key"], "c2hvcnQ=", [Fernet.generate_key().decode(), "broken"]],
    ids=["empty-list", "empty-string", "garbage", "too-short", "one-good-one-broken"],
)
def test_invalid_encryption_keys_are_e003_without_echoing_the_key(cc_settings, keys):
    cc_settings["ENCRYPTION_KEYS"] = keys
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E003"]
    for message in messages:
        assert "not-a-fernet-key" not in f"{message.msg} {message.hint}"
        assert "c2hvcnQ=" not in f"{message.msg} {message.hint}"


def test_comma_separated_encryption_keys_string_is_accepted(cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = f"{Fernet.generate_key().decode()}, {Fernet.generate_key().decode()}"
    assert ids(checks.check_settings()) == []


@pytest.mark.parametrize("flow", ["implicit", "device_code", "PKCE", ""])
def test_unknown_oauth_flow_is_e004(cc_settings, flow):
    cc_settings["OAUTH_FLOW"] = flow
    assert ids(checks.check_settings()) == ["cc_sync.E004"]


def test_unknown_key_is_e005_and_named(cc_settings):
    cc_settings["CLIENT_SECERT"] = "typo"
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E005"]
    assert "CLIENT_SECERT" in messages[0].msg


@pytest.mark.parametrize("value", [0, -1, "fast", "4", None, True, float("nan")])
def test_non_positive_or_non_numeric_api_rate_is_e006(cc_settings, value):
    cc_settings["API_RATE"] = value
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E006"]
    assert "API_RATE" in messages[0].msg


@pytest.mark.parametrize("name", ["TOKEN_RATE", "DAILY_LIMIT", "CONNECT_TIMEOUT", "READ_TIMEOUT", "LEASE"])
def test_other_non_positive_numbers_are_e006(cc_settings, name):
    cc_settings[name] = 0
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E006"]
    assert name in messages[0].msg


NUMERIC = [
    name
    for name in (
        *checks.POSITIVE_NUMBERS,
        *checks.NON_NEGATIVE_NUMBERS,
        *checks.OPTIONAL_NUMBERS,
        "IPV6_PREFIX",
    )
    if name in conf.DEFAULTS
]


@pytest.mark.parametrize("name", NUMERIC)
def test_a_non_numeric_value_of_any_numeric_setting_is_e006_with_a_hint(cc_settings, name):
    cc_settings[name] = "ten"
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E006"]
    assert name in messages[0].msg
    assert "not a string" in messages[0].hint


@pytest.mark.parametrize("name", NUMERIC)
def test_every_numeric_default_passes(cc_settings, name):
    cc_settings[name] = conf.DEFAULTS[name]
    assert ids(checks.check_numbers()) == []


def test_retention_days_may_be_none_and_zero_leeway_is_fine(cc_settings):
    cc_settings.update(RETENTION_DAYS=None, FAILED_RETENTION_DAYS=None, TOKEN_LEEWAY=0, MAX_COUNTDOWN=0)
    assert ids(checks.check_numbers()) == []
    cc_settings["RETENTION_DAYS"] = -1
    assert ids(checks.check_numbers()) == ["cc_sync.E006"]


@pytest.mark.parametrize("debug", [False, True])
def test_http_redirect_uri_is_w001_whatever_debug_says(cc_settings, settings, debug):
    settings.DEBUG = debug
    cc_settings["REDIRECT_URI"] = "http://site.example/admin/cc_sync/connection/callback/"
    assert ids(checks.check_https()) == ["cc_sync.W001"]


@pytest.mark.parametrize("name", ["API_URL", "TOKEN_URL"])
def test_http_endpoint_is_w002_and_named(cc_settings, name):
    cc_settings[name] = "http://cc.test/v3"
    messages = checks.check_https()
    assert ids(messages) == ["cc_sync.W002"]
    assert name in messages[0].msg


def test_https_warnings_are_deploy_checks_not_everyday_ones(cc_settings, settings):
    settings.DEBUG = True  # the sandbox on a laptop: `manage.py check` stays quiet ...
    cc_settings["API_URL"] = "http://127.0.0.1:8765/v3"
    assert "cc_sync.W002" not in ids(run_checks())
    # ... and `manage.py check --deploy` says it, DEBUG or not.
    assert "cc_sync.W002" in ids(run_checks(include_deployment_checks=True))


def test_several_problems_are_all_reported(cc_settings, settings):
    del cc_settings["CLIENT_ID"]
    del cc_settings["CLIENT_SECRET"]
    cc_settings["API_RATE"] = 0
    assert ids(checks.check_settings()) == ["cc_sync.E001", "cc_sync.E002", "cc_sync.E006"]


def test_no_cc_sync_settings_at_all_report_client_id_secret_and_keys(settings):
    del settings.CC_SYNC
    # The default form limits on the test settings' local-memory cache also earn W004.
    assert ids(checks.check_settings()) == ["cc_sync.E001", "cc_sync.E002", "cc_sync.E003", "cc_sync.W004"]


@pytest.mark.parametrize("entry", ["cc_sync", "cc_sync.apps.CCSyncConfig"])
def test_cc_sync_after_admin_is_w003(settings, entry):
    settings.INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        entry,
    ]
    assert ids(checks.check_installed_apps()) == ["cc_sync.W003"]


def test_cc_sync_before_admin_is_fine(settings):
    settings.INSTALLED_APPS = [
        "cc_sync.apps.CCSyncConfig",
        "django.contrib.admin.apps.AdminConfig",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ]
    assert ids(checks.check_installed_apps()) == []


def test_checks_are_registered_with_django(cc_settings):
    del cc_settings["CLIENT_ID"]
    assert "cc_sync.E001" in ids(run_checks())


# -- get_setting ----------------------------------------------------------------------------------------


def test_get_setting_returns_configured_value_or_default(cc_settings):
    assert conf.get_setting("CLIENT_ID") == "test-client-id"
    assert conf.get_setting("TOKEN_LEEWAY") == 300
    cc_settings["TOKEN_LEEWAY"] = 60
    assert conf.get_setting("TOKEN_LEEWAY") == 60


def test_get_setting_refuses_unknown_names(cc_settings):
    with pytest.raises(CCSyncConfigurationError, match="no setting named 'CLIENT_SECERT'"):
        conf.get_setting("CLIENT_SECERT")


@pytest.mark.parametrize("value", [None, "", []])
@pytest.mark.parametrize("name", ["CLIENT_ID", "ENCRYPTION_KEYS"])
def test_get_setting_refuses_missing_required_ones(cc_settings, name, value):
    if value is None:
        del cc_settings[name]
    else:
        cc_settings[name] = value
    with pytest.raises(CCSyncConfigurationError, match=f"Set CC_SYNC\\['{name}'\\]"):
        conf.get_setting(name)


def test_configuration_error_is_improperly_configured():
    assert issubclass(CCSyncConfigurationError, ImproperlyConfigured)


def test_encryption_key_given_as_bytes_is_reported_or_accepted_not_a_crash(cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [Fernet.generate_key()]
    assert ids(checks.check_settings()) in ([], ["cc_sync.E003"])


# -- stored tokens the keys cannot read (cc_sync.E007) -------------------------------------------------

OTHER_KEY = "Zm9yZWlnbi1rZXktbm90LXVzZWQtYnktdGhpcy1zaXQ="


def test_stored_tokens_the_keys_cannot_decrypt_are_e007_with_what_to_do(db, cc_settings):
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [OTHER_KEY]  # a rotation that dropped the old key
    messages = [m for m in run_checks() if m.id and m.id.startswith("cc_sync.")]
    assert ids(messages) == ["cc_sync.E007"]
    assert "access_token and refresh_token" in messages[0].msg
    assert "Restore the old key" in messages[0].hint and "Reconnect" in messages[0].hint
    assert OTHER_KEY not in f"{messages[0].msg} {messages[0].hint}"


def test_readable_tokens_and_no_connection_row_pass_e007(db):
    assert ids(checks.check_stored_tokens()) == []
    make_connection()
    assert ids(checks.check_stored_tokens()) == []
    make_connection(access_token="", refresh_token="", status=Connection.Status.DISCONNECTED)
    assert ids(checks.check_stored_tokens()) == []


def test_stored_tokens_check_without_the_table_says_nothing(db, monkeypatch):
    # Before `migrate` (which runs the checks first) there is no table to read.
    monkeypatch.setattr(Connection._meta, "db_table", "cc_sync_no_such_table")
    assert ids(checks.check_stored_tokens()) == []


def test_stored_tokens_check_without_a_database_says_nothing(settings):
    # No `db` fixture: every query raises here, as with an unreachable database.
    assert ids(checks.check_stored_tokens()) == []


def test_missing_keys_are_e003_only_not_e007(db, cc_settings):
    make_connection()
    del cc_settings["ENCRYPTION_KEYS"]
    assert ids(checks.check_stored_tokens()) == []
    assert ids(checks.check_encryption_keys()) == ["cc_sync.E003"]


# -- CAPTCHA (E008, E009) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"provider": "hcaptcha", "site_key": "k", "secret": "s"},
        {"provider": "Turnstile", "site_key": "k", "secret": "s"},
        {"site_key": "k", "secret": "s"},
        "turnstile",
    ],
    ids=["unknown", "wrong-case", "no-provider", "not-a-dict"],
)
def test_unknown_captcha_provider_is_e008_naming_the_known_ones(cc_settings, config):
    cc_settings["CAPTCHA"] = config
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E008"]
    assert "'turnstile'" in messages[0].hint and "'recaptcha'" in messages[0].hint


@pytest.mark.parametrize("missing", ["site_key", "secret"])
def test_captcha_without_site_key_or_secret_is_e009(cc_settings, missing):
    config = {"provider": "recaptcha", "site_key": "site", "secret": "secret"}
    config[missing] = ""
    cc_settings["CAPTCHA"] = config
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E009"]
    assert missing in messages[0].msg
    del config[missing]
    assert ids(checks.check_captcha()) == ["cc_sync.E009"]


def test_a_complete_captcha_passes(cc_settings):
    cc_settings["CAPTCHA"] = {"provider": "turnstile", "site_key": "site", "secret": "secret"}
    assert ids(checks.check_settings()) == []


# -- LIST_CHOOSER (E010) --------------------------------------------------------------------------------

NOT_CALLABLE = 42


def choose_lists(request, cleaned_data):
    return [LIST_ID]


@pytest.mark.parametrize(
    "path",
    [
        "tests.test_checks.no_such_function",
        "no_such_module.choose",
        "nodots",
        "tests.test_checks.NOT_CALLABLE",
    ],
)
def test_bad_list_chooser_is_e010(cc_settings, path):
    cc_settings["LIST_CHOOSER"] = path
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E010"]
    assert path in messages[0].msg
    assert "dotted path of a function" in messages[0].hint


def test_importable_list_chooser_passes(cc_settings):
    cc_settings["LIST_CHOOSER"] = "tests.test_checks.choose_lists"
    assert ids(checks.check_settings()) == []


# -- CUSTOM_FIELDS (E011) -------------------------------------------------------------------------------

FIELD_ID = "4f3c9a2e-1b2d-4c5e-8f90-123456789abc"


@pytest.mark.parametrize(
    "mapping",
    [
        {"favourite_colour": "Favourite colour"},  # keyed the way the bulk import names its columns
        {FIELD_ID: "favourite_colour"},  # the map turned round
        {"favourite_colour": 7},
        [("favourite_colour", FIELD_ID)],
    ],
    ids=["name-not-id", "inverted", "not-a-string", "not-a-dict"],
)
def test_malformed_custom_fields_are_e011(cc_settings, mapping):
    cc_settings["CUSTOM_FIELDS"] = mapping
    messages = checks.check_settings()
    assert ids(messages) and set(ids(messages)) == {"cc_sync.E011"}
    assert "custom_field_id" in messages[0].hint


def test_custom_fields_mapping_form_fields_to_uuids_passes(cc_settings):
    cc_settings["CUSTOM_FIELDS"] = {"favourite_colour": FIELD_ID, "shoe_size": FIELD_ID.upper()}
    assert ids(checks.check_settings()) == []


# -- LIMIT_* (E012) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [5, (5,), (5, 60, 1), (0, 60), (5, -1), ("5", "60"), (5.5, 60), (True, 60), "5/60", []]
)
@pytest.mark.parametrize("name", ["LIMIT_PER_IP", "LIMIT_PER_EMAIL"])
def test_malformed_limits_are_e012(cc_settings, name, value):
    cc_settings[name] = value
    messages = checks.check_limits()
    assert ids(messages) == ["cc_sync.E012"]
    assert name in messages[0].msg
    assert "None" in messages[0].hint


@pytest.mark.parametrize("value", [None, (5, 60), [1, 3600]])
def test_limits_that_are_none_or_a_pair_pass(cc_settings, value):
    cc_settings["LIMIT_PER_IP"] = value
    assert ids(checks.check_limits()) == []


# -- LIST_IDS (E013) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ["Newsletter"],
        [LIST_ID, "12345"],
        f"{LIST_ID},not-a-uuid",
        [f"{i:08x}-662a-11eb-af0a-fa163e56c9b0" for i in range(51)],
    ],
    ids=["a-name", "one-bad", "comma-string", "51-lists"],
)
def test_bad_list_ids_are_e013_with_what_to_fix(cc_settings, value):
    cc_settings["LIST_IDS"] = value
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.E013"]
    assert "UUID" in messages[0].hint and "connection page" in messages[0].hint


@pytest.mark.parametrize("value", [[], "", [LIST_ID], f"{LIST_ID}, {LIST_ID.upper()}"])
def test_empty_or_valid_list_ids_pass(cc_settings, value):
    cc_settings["LIST_IDS"] = value
    assert ids(checks.check_settings()) == []


def test_each_concern_is_its_own_registered_check(cc_settings):
    from django.core.checks.registry import registry

    registered = registry.get_checks(include_deployment_checks=True)
    for check in (*checks.SETTINGS_CHECKS, checks.check_https, checks.check_stored_tokens):
        assert check in registered
    assert checks.check_https in registry.get_checks(include_deployment_checks=True)
    assert checks.check_https not in registry.get_checks()


# -- the example project's settings ---------------------------------------------------------------------

EXAMPLE_SETTINGS = Path(__file__).resolve().parent.parent / "example_project" / "settings.py"
DEMO_SECRET_KEY = "demo-only-" + "insecure-key-change-me"
DEMO_ENCRYPTION_KEY = "ZGVtby1vbmx5LWtleS1kby1ub3QtdXNlLWluLXByb2Q="
OWN_KEY = "pRmgMa8T0INjEAfksaq2aafzoZXEuwKI7wDe4c1F8AY="


def example_settings(monkeypatch, tmp_path, **environment: str) -> dict:
    """Run example_project/settings.py with exactly this environment (no .env file is read)."""
    import environ

    for name in list(os.environ):
        if name.startswith(("CC_", "CELERY_", "DEBUG", "SECRET_KEY", "DATABASE_URL")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(environ.Env, "read_env", classmethod(lambda cls, *args, **kwargs: None))
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setenv("DEMO_DATA_DIR", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(EXAMPLE_SETTINGS))


def test_example_project_defaults_to_debug_off_and_then_needs_its_own_keys_made_by_the_command(
    monkeypatch, tmp_path
):
    with pytest.raises(ImproperlyConfigured, match="Set SECRET_KEY .* with DEBUG off"):
        example_settings(monkeypatch, tmp_path)
    # No keys yet: the settings still load (so that `manage.py cc_sync_generate_key` can make them) with none.
    assert (
        example_settings(monkeypatch, tmp_path, SECRET_KEY="own-secret")["CC_SYNC"]["ENCRYPTION_KEYS"] == []
    )
    configured = example_settings(
        monkeypatch, tmp_path, SECRET_KEY="own-secret", CC_SYNC_ENCRYPTION_KEYS=OWN_KEY
    )
    assert configured["DEBUG"] is False
    assert configured["CC_SYNC"]["ENCRYPTION_KEYS"] == [OWN_KEY]
    assert configured["CC_SYNC"]["HASH_KEY"] == ""
    assert (
        example_settings(
            monkeypatch, tmp_path, SECRET_KEY="s", CC_SYNC_ENCRYPTION_KEYS=OWN_KEY, CC_SYNC_HASH_KEY="h" * 64
        )["CC_SYNC"]["HASH_KEY"]
        == "h" * 64
    )


def test_example_project_with_debug_and_the_sandbox_runs_on_demo_keys(monkeypatch, tmp_path):
    configured = example_settings(monkeypatch, tmp_path, DEBUG="true")
    assert configured["USING_SANDBOX"] is True
    assert configured["SECRET_KEY"] == DEMO_SECRET_KEY
    assert configured["CC_SYNC"]["ENCRYPTION_KEYS"] == [DEMO_ENCRYPTION_KEY]


@pytest.mark.parametrize("debug", ["true", "false"])
def test_example_project_with_real_cc_credentials_never_uses_the_demo_keys(monkeypatch, tmp_path, debug):
    real = {"DEBUG": debug, "CC_CLIENT_ID": "a-real-cc-api-key", "CC_CLIENT_SECRET": "real-secret"}
    with pytest.raises(ImproperlyConfigured, match="Set SECRET_KEY .* real Constant Contact credentials"):
        example_settings(monkeypatch, tmp_path, **real)
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is the demo's published key"):
        example_settings(
            monkeypatch, tmp_path, **real, SECRET_KEY=DEMO_SECRET_KEY, CC_SYNC_ENCRYPTION_KEYS=OWN_KEY
        )
    # Never the demo's key: none at all until one is made (check E003 says so).
    configured = example_settings(monkeypatch, tmp_path, **real, SECRET_KEY="own-secret")
    assert configured["CC_SYNC"]["ENCRYPTION_KEYS"] == []
    with pytest.raises(ImproperlyConfigured, match="holds the demo's published key"):
        example_settings(
            monkeypatch,
            tmp_path,
            **real,
            SECRET_KEY="own",
            CC_SYNC_ENCRYPTION_KEYS=f"{OWN_KEY},{DEMO_ENCRYPTION_KEY}",
        )
    configured = example_settings(
        monkeypatch, tmp_path, **real, SECRET_KEY="own-secret", CC_SYNC_ENCRYPTION_KEYS=OWN_KEY
    )
    assert configured["USING_SANDBOX"] is False
    assert configured["CC_SYNC"]["API_URL"] == "https://api.cc.email/v3"


# -- E014: the broker's client library ---------------------------------------------------------------


def test_a_redis_broker_without_its_client_library_is_e014_naming_the_extra(settings, monkeypatch):
    """Celery installs no broker client; the worker would die with "No module named 'packaging'"."""
    import sys

    import kombu.transport

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert ids(checks.check_broker_transport()) == []
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    monkeypatch.setitem(sys.modules, "kombu.transport.redis", None)  # as if `packaging`/`redis` were missing
    [message] = checks.check_broker_transport()
    assert message.id == "cc_sync.E014"
    assert "redis://" in message.msg
    assert 'pip install "cc-sync[redis]"' in message.hint
    assert "cc_sync.E014" in ids(checks.check_settings())


def test_a_broker_transport_without_its_library_is_e014_too(settings, monkeypatch):
    import kombu.transport.redis

    settings.CELERY_BROKER_URL = "rediss://cache.example:6380/0"
    monkeypatch.setattr(kombu.transport.redis, "redis", None)  # the module loads, the library is missing
    [message] = checks.check_broker_transport()
    assert message.id == "cc_sync.E014"
    assert "Missing redis library" in message.msg and "cc-sync[redis]" in message.hint


@pytest.mark.parametrize(
    "url", ["", "memory://", "filesystem://", "amqp://guest@127.0.0.1//", "pyamqp://h//;amqp://h2//"]
)
def test_brokers_whose_client_is_installed_pass_e014(settings, url):
    settings.CELERY_BROKER_URL = url
    assert ids(checks.check_broker_transport()) == []


def test_rabbitmq_brokers_name_the_rabbitmq_extra(settings, monkeypatch):
    import sys

    import kombu.transport

    settings.CELERY_BROKER_URL = "amqp://guest@127.0.0.1//"
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    monkeypatch.setitem(sys.modules, "kombu.transport.pyamqp", None)
    [message] = checks.check_broker_transport()
    assert 'pip install "cc-sync[rabbitmq]"' in message.hint


# -- W005: how long a worker holds a sync message, against the broker's limit ------------------------


@pytest.mark.parametrize(
    ("url", "options", "max_countdown", "lease", "expected"),
    [
        # Redis and SQS: the visibility timeout (Celery's default an hour) must exceed countdown + run.
        ("redis://127.0.0.1:6379/0", {}, 300, 120, []),
        ("redis://127.0.0.1:6379/0", {"visibility_timeout": 3600}, 3500, 120, ["cc_sync.W005"]),
        ("rediss://cache.example:6380/0", {"visibility_timeout": 400}, 300, 120, ["cc_sync.W005"]),
        ("sqs://", {"visibility_timeout": 600}, 300, 120, []),
        # RabbitMQ: its consumer_timeout (30 min by default) closes a channel holding a delivery longer.
        ("amqp://guest@127.0.0.1//", {"visibility_timeout": 60}, 300, 120, []),
        ("amqp://guest@127.0.0.1//", {}, 1700, 120, ["cc_sync.W005"]),
        ("pyamqp://h//;amqp://h2//", {}, 1800, 0, ["cc_sync.W005"]),
        # No such limit on these.
        ("memory://", {"visibility_timeout": 1}, 300, 120, []),
        ("", {}, 86400, 120, []),
    ],
)
def test_a_sync_message_held_longer_than_the_broker_allows_is_w005(
    settings, cc_settings, url, options, max_countdown, lease, expected
):
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    cc_settings.update(MAX_COUNTDOWN=max_countdown, LEASE=lease)
    messages = checks.check_broker_holding_time()
    assert ids(messages) == expected
    assert all("MAX_COUNTDOWN" in message.hint for message in messages)


def test_w005_leaves_bad_numbers_to_e006(settings, cc_settings):
    settings.CELERY_BROKER_URL = "amqp://guest@127.0.0.1//"
    cc_settings["MAX_COUNTDOWN"] = "a day"
    assert ids(checks.check_broker_holding_time()) == []
    assert "cc_sync.E006" in ids(checks.check_settings())


def test_the_broker_extras_exist_in_the_package_metadata():
    from importlib.metadata import metadata

    # The installed package's metadata (every supported Python has it; tomllib only from 3.11 on).
    info = metadata("cc-sync")
    extras = set(info.get_all("Provides-Extra") or [])
    for extra in set(checks.BROKER_EXTRAS.values()):
        assert extra.removeprefix("cc-sync[").removesuffix("]") in extras, extra
    requires = info.get_all("Requires-Dist") or []
    assert any(dep.startswith("celery[redis]") and 'extra == "redis"' in dep for dep in requires), requires


def test_example_project_with_debug_off_and_no_keys_yet_runs_the_key_command(tmp_path):
    """The example project's own "make a key" advice works: the settings no longer refuse to load first."""
    import subprocess
    import sys

    root = EXAMPLE_SETTINGS.parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CC_", "CELERY_", "DJANGO_", "DEBUG"))}
    env.update(
        SECRET_KEY="own-secret",
        DEBUG="false",
        CELERY_BROKER_URL="memory://",
        DEMO_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    manage = [sys.executable, str(root / "manage.py")]
    made = subprocess.run(
        [*manage, "cc_sync_generate_key", "--env"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert "CC_SYNC_HASH_KEY=" in made.stdout
    checked = subprocess.run([*manage, "check"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert checked.returncode == 1 and "cc_sync.E003" in checked.stderr


def test_every_setting_has_one_typed_accessor_read_afresh(cc_settings):
    from cc_sync.conf import DEFAULTS, AppSettings, app_settings

    assert sorted(name for name in vars(AppSettings) if name.isupper()) == sorted(DEFAULTS)
    cc_settings["API_RATE"] = "2.5"  # from the environment, say
    assert app_settings.API_RATE == 2.5
    cc_settings["LIST_IDS"] = "a, b"
    assert app_settings.LIST_IDS == ["a", "b"]
    cc_settings["LIMIT_PER_IP"] = None
    assert app_settings.LIMIT_PER_IP is None
