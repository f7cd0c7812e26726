"""Stored secrets: MultiFernet encryption, key rotation, secrets bound to their owner (a
token copied into another practitioner's row does not decrypt there), the data migration
that binds the existing ones, and no plaintext anywhere."""

from __future__ import annotations

import base64
import importlib
import io
import logging
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection

from emailsettings import crypto
from emailsettings.exceptions import DecryptionError, MailboxConfigurationError
from emailsettings.guidance import ErrorClass
from emailsettings.health.verify import send_test_mail, verify_mailbox
from emailsettings.models import MailboxStatus, SmtpAccount

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
    with pytest.raises(DecryptionError) as excinfo:
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
    # Re-encrypted with the newest key, and still bound to each owner.
    token = first.password_encrypted.encode()
    assert derived_fernet(fresh, practitioner.pk).decrypt(token).decode() == PASSWORD
    with pytest.raises(InvalidToken):
        derived_fernet(fresh, other_practitioner.pk).decrypt(token)


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
    settings.EMAILSETTINGS_LOCAL_OAUTH_SERVER = {"url": "http://127.0.0.1:8765"}
    assert check_ids(settings) == {
        "emailsettings.E003",
        "emailsettings.E004",
        "emailsettings.E013",
    }
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = None
    settings.EMAILSETTINGS_LOCAL_OAUTH_SERVER = None
    assert check_ids(settings) == set()


# --- secrets bound to their owner ----------------------------------------------------------


def derived_fernet(key: str, owner_id: int, purpose: str = crypto.SMTP_PASSWORD) -> Fernet:
    """The derivation spelled out (RFC 5869 HKDF-SHA256, no salt): it is part of the stored
    data, so a change to it must fail here before it strands every stored password."""
    info = f"psicogest/{purpose}/{owner_id}".encode()
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        base64.urlsafe_b64decode(key)
    )
    return Fernet(base64.urlsafe_b64encode(raw))


def test_a_bound_token_is_fernet_under_the_key_derived_for_its_owner(keys):
    key = keys.EMAILSETTINGS_ENCRYPTION_KEYS[0]
    token = crypto.encrypt_for(PASSWORD, owner_id=42, purpose=crypto.SMTP_PASSWORD)
    assert PASSWORD not in token
    assert derived_fernet(key, 42).decrypt(token.encode()).decode() == PASSWORD
    with pytest.raises(InvalidToken):
        Fernet(key).decrypt(token.encode())  # never the master key itself


@pytest.mark.parametrize(
    ("owner_id", "purpose"),
    [(43, crypto.SMTP_PASSWORD), (4, crypto.SMTP_PASSWORD), (42, "oauth-refresh-token")],
)
def test_a_bound_token_decrypts_for_no_other_owner_or_purpose(keys, owner_id, purpose):
    token = crypto.encrypt_for(PASSWORD, owner_id=42, purpose=crypto.SMTP_PASSWORD)
    assert crypto.decrypt_for(token, owner_id=42, purpose=crypto.SMTP_PASSWORD) == PASSWORD
    with pytest.raises(DecryptionError) as excinfo:
        crypto.decrypt_for(token, owner_id=owner_id, purpose=purpose)
    assert token not in str(excinfo.value) and PASSWORD not in str(excinfo.value)
    assert "another row" in str(excinfo.value)
    with pytest.raises(DecryptionError):
        crypto.rotate_for(token, owner_id=owner_id, purpose=purpose)


def test_bound_and_unbound_tokens_do_not_mix(keys):
    """The contract's encrypt()/decrypt() keep working, and neither form reads the other."""
    unbound = crypto.encrypt(PASSWORD)
    bound = crypto.encrypt_for(PASSWORD, owner_id=7, purpose=crypto.SMTP_PASSWORD)
    assert crypto.decrypt(unbound) == PASSWORD
    with pytest.raises(DecryptionError):
        crypto.decrypt(bound)
    with pytest.raises(DecryptionError):
        crypto.decrypt_for(unbound, owner_id=7, purpose=crypto.SMTP_PASSWORD)


def test_bound_tokens_follow_the_key_list(keys):
    """First key encrypts, every key decrypts; a changed setting resets the derived keys."""
    old = keys.EMAILSETTINGS_ENCRYPTION_KEYS[0]
    old_token = crypto.encrypt_for(PASSWORD, owner_id=7, purpose=crypto.SMTP_PASSWORD)
    fresh = new_key()
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [fresh, old]
    assert crypto.decrypt_for(old_token, owner_id=7, purpose=crypto.SMTP_PASSWORD) == PASSWORD
    rotated = crypto.rotate_for(old_token, owner_id=7, purpose=crypto.SMTP_PASSWORD)
    assert derived_fernet(fresh, 7).decrypt(rotated.encode()).decode() == PASSWORD
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [fresh]
    assert crypto.decrypt_for(rotated, owner_id=7, purpose=crypto.SMTP_PASSWORD) == PASSWORD
    with pytest.raises(DecryptionError):
        crypto.decrypt_for(old_token, owner_id=7, purpose=crypto.SMTP_PASSWORD)


@pytest.mark.parametrize(
    ("owner_id", "purpose", "error"),
    [
        (None, crypto.SMTP_PASSWORD, TypeError),  # an unsaved practitioner
        (True, crypto.SMTP_PASSWORD, TypeError),
        ("7", crypto.SMTP_PASSWORD, TypeError),
        (0, crypto.SMTP_PASSWORD, ValueError),
        (-7, crypto.SMTP_PASSWORD, ValueError),
        (7, "", ValueError),
        (7, "smtp-password/8", ValueError),  # would make the info string ambiguous
        (7, "SMTP Password", ValueError),
    ],
)
def test_a_binding_needs_a_real_owner_and_a_plain_purpose(keys, owner_id, purpose, error):
    with pytest.raises(error):
        crypto.encrypt_for(PASSWORD, owner_id=owner_id, purpose=purpose)
    with pytest.raises(error):
        crypto.decrypt_for("token", owner_id=owner_id, purpose=purpose)


def test_set_password_without_a_practitioner_refuses_to_bind(keys):
    with pytest.raises(TypeError):
        SmtpAccount(email="a@example.test").set_password(PASSWORD)


def copy_password(source: SmtpAccount, target: SmtpAccount) -> SmtpAccount:
    """What someone with write access to the table would do."""
    SmtpAccount.objects.filter(pk=target.pk).update(password_encrypted=source.password_encrypted)
    target.refresh_from_db()
    return target


def test_a_password_copied_into_another_practitioners_row_does_not_decrypt(
    keys, practitioner, other_practitioner
):
    mine = make_account(practitioner)
    theirs = make_account(other_practitioner, password="altra-password")
    copy_password(mine, theirs)

    assert theirs.password_encrypted == mine.password_encrypted
    with pytest.raises(DecryptionError):
        theirs.get_password()
    mine.refresh_from_db()
    assert mine.get_password() == PASSWORD

    # The sending path turns it into the "re-enter the password" failure, before connecting.
    from emailsettings.mailbox.smtp import connection_for

    with pytest.raises(MailboxConfigurationError) as excinfo:
        connection_for(theirs)
    assert "La password salvata non è leggibile" in excinfo.value.failure.reply
    assert excinfo.value.failure.error_class == ErrorClass.AUTH_FAILED
    assert PASSWORD not in str(excinfo.value)


@pytest.mark.parametrize("check", [verify_mailbox, send_test_mail], ids=["verify", "test-mail"])
def test_a_check_with_a_copied_password_fails_without_reaching_the_server(
    keys, smtp_server_factory, smtp_account_factory, other_practitioner, caplog, check
):
    """Both mailboxes point at the same real server, which knows the copied password: the
    other practitioner's check never logs in with it, and is told to enter it again."""
    server = smtp_server_factory()
    mine = smtp_account_factory(server)
    theirs = smtp_account_factory(server, practitioner=other_practitioner, password="x")
    copy_password(mine, theirs)

    result = check(account=theirs)

    assert not result.ok
    theirs.refresh_from_db()
    assert theirs.status == MailboxStatus.BROKEN
    assert theirs.last_error["error_class"] == ErrorClass.AUTH_FAILED
    assert "La password salvata non è leggibile" in theirs.last_error["reply"]
    assert server.auth_attempts == [] and server.messages == []
    assert check(account=mine).ok  # the owner's mailbox still works
    assert server.auth_attempts == [mine.username]
    from tests.support.smtp_fixtures import SMTP_PASSWORD

    assert SMTP_PASSWORD not in caplog.text and SMTP_PASSWORD not in str(theirs.last_error)


def test_rotation_refuses_a_password_copied_from_another_row(
    keys, practitioner, other_practitioner
):
    """Rotating never launders a copied token into one bound to its new row."""
    mine = make_account(practitioner)
    theirs = copy_password(mine, make_account(other_practitioner, password="altra"))
    keys.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key(), keys.EMAILSETTINGS_ENCRYPTION_KEYS[0]]
    with pytest.raises(CommandError, match=f"SmtpAccount ids: {theirs.pk}"):
        call_command("rotate_email_keys", stdout=io.StringIO())
    theirs.refresh_from_db()
    assert theirs.password_encrypted == mine.password_encrypted  # rolled back


# --- the data migration that binds the existing tokens -------------------------------------

migration = importlib.import_module("emailsettings.migrations.0006_bind_secrets_to_owner")
SCHEMA_EDITOR = SimpleNamespace(connection=connection)


def store(account: SmtpAccount, token: str) -> None:
    SmtpAccount.objects.filter(pk=account.pk).update(password_encrypted=token)
    account.refresh_from_db()


def test_the_migration_binds_an_unbound_password_to_its_row(keys, practitioner, other_practitioner):
    mine = make_account(practitioner)
    theirs = make_account(other_practitioner, password="altra-password")
    store(mine, crypto.encrypt(PASSWORD))  # as written before the migration
    store(theirs, crypto.encrypt("altra-password"))
    with pytest.raises(DecryptionError):
        mine.get_password()

    migration.bind_to_owner(apps, SCHEMA_EDITOR)

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.get_password() == PASSWORD
    assert theirs.get_password() == "altra-password"
    with pytest.raises(DecryptionError):
        crypto.decrypt(mine.password_encrypted)  # no longer readable unbound
    assert PASSWORD not in mine.password_encrypted
    # Bound: the migrated token does not decrypt in the other row.
    with pytest.raises(DecryptionError):
        copy_password(mine, theirs).get_password()


def test_the_migration_leaves_bound_empty_and_unreadable_passwords_as_they_are(
    keys, practitioner, other_practitioner, caplog
):
    bound = make_account(practitioner)
    unreadable = make_account(other_practitioner)
    store(unreadable, Fernet(new_key()).encrypt(b"chiave-persa").decode())
    before = {a.pk: a.password_encrypted for a in SmtpAccount.objects.all()}
    caplog.set_level(logging.WARNING)

    migration.bind_to_owner(apps, SCHEMA_EDITOR)

    after = {a.pk: a.password_encrypted for a in SmtpAccount.objects.all()}
    assert after == before
    assert f"SmtpAccount ids: {unreadable.pk}" in caplog.text
    assert before[unreadable.pk] not in caplog.text
    bound.refresh_from_db()
    assert bound.get_password() == PASSWORD


def test_the_migration_reverses_to_unbound_tokens(keys, practitioner):
    account = make_account(practitioner)
    migration.unbind_from_owner(apps, SCHEMA_EDITOR)
    account.refresh_from_db()
    assert crypto.decrypt(account.password_encrypted) == PASSWORD
    migration.bind_to_owner(apps, SCHEMA_EDITOR)
    account.refresh_from_db()
    assert account.get_password() == PASSWORD


def test_the_migration_is_wired_as_the_data_step_after_the_outbox_spine():
    operation = migration.Migration.operations[0]
    assert operation.code is migration.bind_to_owner
    assert operation.reverse_code is migration.unbind_from_owner
    assert ("emailsettings", "0005_outbox_spine") in migration.Migration.dependencies
