"""Tokens are encrypted at rest, and the keys can be rotated without losing them."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.db import connection as db_connection

from cc_sync import crypto
from cc_sync.exceptions import CCSyncConfigurationError
from cc_sync.models import Connection
from tests.conftest import ACCESS_TOKEN, REFRESH_TOKEN, make_connection

KEY_A = "pRmgMa8T0INjEAfksaq2aafzoZXEuwKI7wDe4c1F8AY="  # the key in tests/settings.py
KEY_B = "0Xb7yJ9dyq1m8QwnZ9u6K0W1v1l6i8s0h3tqVj2J8nE="
KEY_C = "Zm9yZWlnbi1rZXktbm90LXVzZWQtYnktdGhpcy1zaXQ="


def raw_tokens() -> tuple[str, str]:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM cc_sync_connection")
        return cursor.fetchone()


def test_keys_used_here_are_distinct_valid_fernet_keys():
    assert len({KEY_A, KEY_B, KEY_C}) == 3
    for key in (KEY_A, KEY_B, KEY_C):
        Fernet(key.encode())


def test_raw_database_columns_hold_ciphertext_only(connection):
    raw_access, raw_refresh = raw_tokens()
    assert ACCESS_TOKEN not in raw_access
    assert REFRESH_TOKEN not in raw_refresh
    assert Fernet(KEY_A.encode()).decrypt(raw_access.encode()).decode() == ACCESS_TOKEN
    assert Fernet(KEY_A.encode()).decrypt(raw_refresh.encode()).decode() == REFRESH_TOKEN


def test_same_token_encrypts_differently_each_time(db):
    assert crypto.encrypt(ACCESS_TOKEN) != crypto.encrypt(ACCESS_TOKEN)
    assert crypto.decrypt(crypto.encrypt(ACCESS_TOKEN)) == ACCESS_TOKEN


def test_dumpdata_does_not_contain_the_tokens(connection):
    out = io.StringIO()
    call_command("dumpdata", "cc_sync", stdout=out)
    dump = out.getvalue()
    rows = [row for row in json.loads(dump) if row["model"] == "cc_sync.connection"]
    assert len(rows) == 1
    assert rows[0]["fields"]["account_name"] == "Acme Inc"
    assert ACCESS_TOKEN not in dump
    assert REFRESH_TOKEN not in dump


def test_empty_tokens_are_stored_empty(db):
    make_connection(access_token="", refresh_token="", status=Connection.Status.DISCONNECTED)
    assert raw_tokens() == ("", "")
    stored = Connection.load()
    assert (stored.access_token, stored.refresh_token) == ("", "")


def test_rows_written_with_old_key_still_read_after_new_key_is_put_first(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_B, KEY_A]
    stored = Connection.load()
    assert (stored.access_token, stored.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)


def test_new_writes_use_the_first_key(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_B, KEY_A]
    make_connection()
    raw_access, _raw_refresh = raw_tokens()
    assert Fernet(KEY_B.encode()).decrypt(raw_access.encode()).decode() == ACCESS_TOKEN
    with pytest.raises(InvalidToken):
        Fernet(KEY_A.encode()).decrypt(raw_access.encode())


def test_rotate_keys_command_reencrypts_with_newest_key(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_B, KEY_A]
    out = io.StringIO()
    call_command("cc_sync_rotate_keys", stdout=out)
    assert "re-encrypted" in out.getvalue()

    raw_access, raw_refresh = raw_tokens()
    assert Fernet(KEY_B.encode()).decrypt(raw_access.encode()).decode() == ACCESS_TOKEN
    assert Fernet(KEY_B.encode()).decrypt(raw_refresh.encode()).decode() == REFRESH_TOKEN
    with pytest.raises(InvalidToken):
        Fernet(KEY_A.encode()).decrypt(raw_refresh.encode())

    cc_settings["ENCRYPTION_KEYS"] = [KEY_B]
    stored = Connection.load()
    assert (stored.access_token, stored.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert stored.status == Connection.Status.CONNECTED
    assert stored.account_name == "Acme Inc"


def test_rotate_keys_accepts_comma_separated_keys_string(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = f"{KEY_B},{KEY_A}"
    call_command("cc_sync_rotate_keys", stdout=io.StringIO())
    cc_settings["ENCRYPTION_KEYS"] = KEY_B
    assert Connection.load().refresh_token == REFRESH_TOKEN


def test_reading_with_only_an_unrelated_key_raises_configuration_error_without_the_key(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]
    with pytest.raises(CCSyncConfigurationError) as raised:
        Connection.load()
    message = str(raised.value)
    assert "ENCRYPTION_KEYS" in message
    for secret in (KEY_A, KEY_B, KEY_C, ACCESS_TOKEN, REFRESH_TOKEN):
        assert secret not in message


def test_invalid_key_material_raises_configuration_error_without_the_key(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = ["this-is-not-a-fernet-key"]
    with pytest.raises(CCSyncConfigurationError) as raised:
        crypto.encrypt("anything")
    assert "this-is-not-a-fernet-key" not in str(raised.value)
    assert "cc_sync_generate_key" in str(raised.value)


def test_generated_key_is_a_working_fernet_key():
    key = crypto.generate_key()
    assert key != crypto.generate_key()
    token = Fernet(key.encode()).encrypt(b"x")
    assert Fernet(key.encode()).decrypt(token) == b"x"
