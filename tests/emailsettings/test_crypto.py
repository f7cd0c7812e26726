"""Stored secrets: MultiFernet encryption, key rotation, and no plaintext anywhere."""

from __future__ import annotations

import io
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from emailsettings import crypto
from emailsettings.models import SmtpAccount

PASSWORD = "Sègreta-Pàssword-42!"


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def keys(settings):
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key()]
    return settings


def make_account(practitioner, password: str = PASSWORD) -> SmtpAccount:
    account = SmtpAccount(
        practitioner=practitioner,
        email=practitioner.email,
        host="localhost",
        port=1025,
        security="starttls",
        username=practitioner.email,
    )
    account.set_password(password)
    account.save()
    return account


def test_roundtrip_and_no_plaintext_in_the_token(keys):
    token = crypto.encrypt(PASSWORD)
    assert PASSWORD not in token
    assert crypto.decrypt(token) == PASSWORD
    assert crypto.encrypt(PASSWORD) != token  # random IV each time


def test_changed_setting_resets_the_cached_keys(keys):
    token = crypto.encrypt(PASSWORD)
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key()]
    with pytest.raises(crypto.DecryptionError) as excinfo:
        crypto.decrypt(token)
    assert token not in str(excinfo.value) and PASSWORD not in str(excinfo.value)
    assert "rotate_email_keys" in str(excinfo.value)


def test_first_key_encrypts_every_key_decrypts(keys):
    old = keys.EMAILSETTINGS_ENCRYPTION_KEYS[0]
    old_token = crypto.encrypt(PASSWORD)
    fresh = new_key()
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [fresh, old]
    assert crypto.decrypt(old_token) == PASSWORD
    new_token = crypto.encrypt(PASSWORD)
    assert Fernet(fresh).decrypt(new_token.encode()).decode() == PASSWORD


def test_rotation_add_new_key_rotate_drop_old_key(keys, practitioner, other_practitioner):
    old = keys.EMAILSETTINGS_ENCRYPTION_KEYS[0]
    first = make_account(practitioner)
    second = make_account(other_practitioner, password="altra-password")
    fresh = new_key()
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [fresh, old]

    out = io.StringIO()
    call_command("rotate_email_keys", stdout=out)
    assert "2" in out.getvalue()

    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [fresh]  # the old key is gone
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.get_password() == PASSWORD
    assert second.get_password() == "altra-password"


def test_rotation_refuses_when_a_secret_cannot_be_decrypted(keys, practitioner):
    account = make_account(practitioner)
    before = account.password_encrypted
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key()]  # the encrypting key was dropped early
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_email_keys", stdout=io.StringIO())
    account.refresh_from_db()
    assert account.password_encrypted == before


def test_password_is_never_stored_in_plaintext(keys, practitioner):
    account = make_account(practitioner)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {SmtpAccount._meta.db_table} WHERE id = %s",  # noqa: S608
            [account.pk],
        )
        row = cursor.fetchone()
    assert all(PASSWORD not in str(value) for value in row)
    assert account.get_password() == PASSWORD


def test_empty_password_stays_empty(keys, practitioner):
    account = make_account(practitioner, password="")
    assert account.password_encrypted == "" and not account.has_password
    assert account.get_password() == ""


def test_mask_reveals_nothing():
    assert crypto.mask(PASSWORD) == "••••"
    assert crypto.mask("") == ""


def test_secrets_do_not_reach_the_logs(keys, practitioner, caplog):
    caplog.set_level(logging.DEBUG)
    account = make_account(practitioner)
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key(), keys.EMAILSETTINGS_ENCRYPTION_KEYS[0]]
    call_command("rotate_email_keys", stdout=io.StringIO())
    account.refresh_from_db()
    assert account.get_password() == PASSWORD
    assert PASSWORD not in caplog.text


def check_ids(settings) -> set[str]:
    from emailsettings import checks

    errors = checks.check_encryption_keys() + checks.check_personal_smtp_guard()
    return {error.id for error in errors}


def test_system_checks_refuse_missing_or_malformed_keys(settings):
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = []
    assert "emailsettings.E001" in check_ids(settings)
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key(), "non-una-chiave"]
    assert "emailsettings.E002" in check_ids(settings)
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key()]
    assert check_ids(settings) == set()


def test_system_checks_refuse_the_development_smtp_settings_in_production(settings):
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key()]
    settings.DJANGO_ENV = "production"
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = True
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {"host": "localhost", "port": 1025}
    assert check_ids(settings) == {"emailsettings.E003", "emailsettings.E004"}
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = None
    assert check_ids(settings) == set()
