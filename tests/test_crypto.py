"""Tokens are encrypted at rest, and the keys can be rotated without losing them."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection

from cc_sync import crypto, sync
from cc_sync.exceptions import CCSyncConfigurationError, ReconnectRequired
from cc_sync.fields import is_set, unreadable_fields
from cc_sync.models import Connection, Signup
from rig.cc import make_connection
from rig.constants import ACCESS_TOKEN, LIST_ID, REFRESH_TOKEN

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


def test_a_wrong_key_loads_the_connection_and_using_a_token_asks_to_restore_the_key_or_reconnect(
    db, cc_settings
):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]  # a rotation that dropped the old key
    stored = Connection.load()  # never raises: the visitor's form and every admin page read this row
    assert stored.status == Connection.Status.CONNECTED
    assert unreadable_fields(stored) == ["access_token", "refresh_token"]
    with pytest.raises(ReconnectRequired) as raised:
        stored.access_token  # noqa: B018
    message = str(raised.value)
    assert "cannot be read with the configured ENCRYPTION_KEYS" in message
    assert "restore the old key" in message and "reconnect" in message
    assert raised.value.error_key == "tokens_unreadable"
    for secret in (KEY_A, KEY_C, ACCESS_TOKEN, REFRESH_TOKEN, *raw_tokens()):
        assert secret not in message
    with pytest.raises(CCSyncConfigurationError):  # the low-level call still says what is wrong
        crypto.decrypt(raw_tokens()[0])


def test_saving_a_row_with_unreadable_tokens_keeps_the_ciphertext_so_the_old_key_still_reads_it(
    db, cc_settings
):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    before = raw_tokens()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]
    stored = Connection.load()
    stored.status = Connection.Status.NEEDS_RECONNECT
    stored.last_error = "keys"
    stored.save()
    assert raw_tokens() == before
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C, KEY_A]  # the old key restored behind the new one
    stored = Connection.load()
    assert unreadable_fields(stored) == []
    assert (stored.access_token, stored.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)


def test_missing_keys_do_not_break_loading_the_connection(db, cc_settings):
    make_connection()
    del cc_settings["ENCRYPTION_KEYS"]
    stored = Connection.load()
    assert unreadable_fields(stored) == ["access_token", "refresh_token"]
    assert not crypto.is_readable(stored.__dict__["access_token"])


def test_loaddata_of_ciphertext_made_under_another_key_is_marked_unreadable_not_taken_for_a_token(
    db, cc_settings, tmp_path
):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]  # another site's key
    make_connection()
    out = io.StringIO()
    call_command("dumpdata", "cc_sync.connection", stdout=out)
    [row] = json.loads(out.getvalue())
    foreign = (row["fields"]["access_token"], row["fields"]["refresh_token"])
    Connection.objects.all().delete()
    fixture = tmp_path / "connection.json"
    fixture.write_text(out.getvalue())
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    call_command("loaddata", str(fixture), verbosity=0)
    # Stored exactly as it came (not encrypted a second time), so the right key can still read it.
    assert raw_tokens() == foreign
    stored = Connection.load()
    assert unreadable_fields(stored) == ["access_token", "refresh_token"]
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A, KEY_C]
    assert Connection.load().refresh_token == REFRESH_TOKEN


def test_dumpdata_writes_unreadable_tokens_as_the_same_ciphertext(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]
    out = io.StringIO()
    call_command("dumpdata", "cc_sync.connection", stdout=out)
    [row] = json.loads(out.getvalue())
    assert (row["fields"]["access_token"], row["fields"]["refresh_token"]) == raw_tokens()


def test_rotate_keys_refuses_tokens_it_cannot_read_and_changes_nothing(db, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    before = raw_tokens()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_B]
    with pytest.raises(CommandError, match="restore the old key"):
        call_command("cc_sync_rotate_keys", stdout=io.StringIO())
    assert raw_tokens() == before


def test_the_public_form_stores_the_signup_whatever_the_keys(client, db, cc_settings, published):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]
    response = client.post("/signup/", {"email": "anna@example.com", "first_name": "Anna", "consent": "on"})
    assert response.status_code == 302
    assert Signup.objects.filter(email="anna@example.com").exists()


def test_a_worker_holds_the_signup_for_a_reconnect_when_the_tokens_cannot_be_read(db, cc_settings, cc_api):
    cc_settings["ENCRYPTION_KEYS"] = [KEY_A]
    make_connection()
    signup = Signup.objects.create(email="anna@example.com", list_ids=[LIST_ID])
    cc_settings["ENCRYPTION_KEYS"] = [KEY_C]
    sync.process_signup(signup.pk)  # cc_api: no request may reach CC
    signup.refresh_from_db()
    assert signup.status == Signup.Status.WAITING_RECONNECT
    assert "restore the old key or reconnect" in signup.last_error.replace("\n", " ").lower() or (
        "restore the old key" in signup.last_error
    )


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


def test_is_set_refuses_a_field_that_is_not_encrypted(db):
    with pytest.raises(TypeError, match=r"Connection\.status is not an encrypted field"):
        is_set(Connection(), "status")
