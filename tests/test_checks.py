"""System checks (cc_sync.E00x / W00x) and the settings accessor."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from cc_sync import checks, conf
from cc_sync.exceptions import CCSyncConfigurationError


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def test_test_settings_pass_every_check(cc_settings, settings):
    settings.DEBUG = False
    assert ids(checks.check_settings()) == []
    assert ids(checks.check_installed_apps()) == []


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


@pytest.mark.parametrize("value", [0, -1, "fast", None])
def test_non_positive_api_rate_is_e006(cc_settings, value):
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


def test_http_redirect_uri_without_debug_is_w001(cc_settings, settings):
    settings.DEBUG = False
    cc_settings["REDIRECT_URI"] = "http://site.example/admin/cc_sync/connection/callback/"
    assert ids(checks.check_settings()) == ["cc_sync.W001"]


def test_http_redirect_uri_with_debug_is_fine(cc_settings, settings):
    settings.DEBUG = True
    cc_settings["REDIRECT_URI"] = "http://localhost:8000/admin/cc_sync/connection/callback/"
    assert ids(checks.check_settings()) == []


def test_http_api_url_without_debug_is_w002(cc_settings, settings):
    settings.DEBUG = False
    cc_settings["API_URL"] = "http://api.cc.test/v3"
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.W002"]
    assert "API_URL" in messages[0].msg


def test_http_token_url_without_debug_is_w002(cc_settings, settings):
    settings.DEBUG = False
    cc_settings["TOKEN_URL"] = "http://authz.cc.test/token"
    messages = checks.check_settings()
    assert ids(messages) == ["cc_sync.W002"]
    assert "TOKEN_URL" in messages[0].msg


def test_http_api_url_with_debug_is_fine(cc_settings, settings):
    settings.DEBUG = True
    cc_settings["API_URL"] = "http://127.0.0.1:8001/v3"
    assert ids(checks.check_settings()) == []


def test_several_problems_are_all_reported(cc_settings, settings):
    settings.DEBUG = False
    del cc_settings["CLIENT_ID"]
    del cc_settings["CLIENT_SECRET"]
    cc_settings["API_RATE"] = 0
    cc_settings["API_URL"] = "http://api.cc.test/v3"
    assert ids(checks.check_settings()) == ["cc_sync.E001", "cc_sync.E002", "cc_sync.E006", "cc_sync.W002"]


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
