"""``python manage.py rotate_email_keys``: re-encrypt every stored mailbox secret — the SMTP
password and the OAuth refresh and access tokens — with the newest key of
``EMAILSETTINGS_ENCRYPTION_KEYS``, so an old key can then be dropped. Each secret stays bound
to its practitioner and purpose (see :mod:`emailsettings.crypto`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q

from emailsettings import crypto
from emailsettings.models import SmtpAccount

# Column → purpose of the secrets it holds.
SECRET_COLUMNS = {
    "password_encrypted": crypto.SMTP_PASSWORD,
    "oauth_refresh_token_encrypted": crypto.OAUTH_REFRESH_TOKEN,
    "oauth_access_token_encrypted": crypto.OAUTH_ACCESS_TOKEN,
}


class Command(BaseCommand):
    help = (
        "Re-encrypts every stored SMTP password and OAuth token with the newest key in "
        "EMAILSETTINGS_ENCRYPTION_KEYS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        failed: list[int] = []
        with_secrets = Q()
        for column in SECRET_COLUMNS:
            with_secrets |= ~Q(**{column: ""})
        with transaction.atomic():
            accounts = SmtpAccount.objects.filter(with_secrets).select_for_update()
            for account in accounts.only("pk", "practitioner_id", *SECRET_COLUMNS):
                changes: dict[str, str] = {}
                try:
                    for column, purpose in SECRET_COLUMNS.items():
                        token = getattr(account, column)
                        if token:
                            changes[column] = crypto.rotate_for(
                                token, owner_id=account.practitioner_id, purpose=purpose
                            )
                except crypto.DecryptionError:
                    failed.append(account.pk)
                    continue
                SmtpAccount.objects.filter(pk=account.pk).update(**changes)
                rotated += len(changes)
            if failed:
                # Raising inside atomic() rolls back: nothing is half-done.
                raise CommandError(
                    f"{len(failed)} mailbox(es) hold secrets that could not be decrypted with "
                    f"the configured keys (SmtpAccount ids: {', '.join(map(str, failed))}); "
                    "nothing was changed. Put back the key that encrypted them and run again; "
                    "a secret copied from another practitioner's row never decrypts: clear it "
                    "and let its owner enter the password or connect the account again."
                )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} mailbox secret(s)."))
