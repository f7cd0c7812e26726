"""``python manage.py rotate_email_keys``: re-encrypt every stored mailbox password with the
newest key of ``EMAILSETTINGS_ENCRYPTION_KEYS``, so an old key can then be dropped. Each
password stays bound to its practitioner (see :mod:`emailsettings.crypto`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from emailsettings import crypto
from emailsettings.models import SmtpAccount


class Command(BaseCommand):
    help = (
        "Re-encrypts every stored SMTP password with the newest key in "
        "EMAILSETTINGS_ENCRYPTION_KEYS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        failed: list[int] = []
        with transaction.atomic():
            accounts = SmtpAccount.objects.exclude(password_encrypted="").select_for_update()
            for account in accounts.only("pk", "practitioner_id", "password_encrypted"):
                try:
                    token = crypto.rotate_for(
                        account.password_encrypted,
                        owner_id=account.practitioner_id,
                        purpose=crypto.SMTP_PASSWORD,
                    )
                except crypto.DecryptionError:
                    failed.append(account.pk)
                    continue
                SmtpAccount.objects.filter(pk=account.pk).update(password_encrypted=token)
                rotated += 1
            if failed:
                # Raising inside atomic() rolls back: nothing is half-done.
                raise CommandError(
                    f"{len(failed)} password(s) could not be decrypted with the configured "
                    f"keys (SmtpAccount ids: {', '.join(map(str, failed))}); nothing was "
                    "changed. Put back the key that encrypted them and run again; a password "
                    "copied from another practitioner's row never decrypts: clear it and let "
                    "its owner enter it again."
                )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} SMTP password(s)."))
