"""``python manage.py rotate_email_keys``: re-encrypt every stored secret — the SMTP
password, the OAuth refresh and access tokens, the patients' PDF passwords — with the newest key of
``EMAILSETTINGS_ENCRYPTION_KEYS``, so an old key can then be dropped. Each secret stays bound
to its practitioner and purpose (see :mod:`emailsettings.crypto`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q

from emailsettings import crypto
from emailsettings.models import SmtpAccount
from psicogest.models import Patient

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
            rotated_pdf = self._rotate_pdf_passwords()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} mailbox secret(s)."))
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {rotated_pdf} patient PDF password(s).")
        )

    def _rotate_pdf_passwords(self) -> int:
        """The patients' PDF passwords, each bound to its patient; inside the caller's
        transaction, so a failure rolls back the mailboxes too."""
        rotated = 0
        failed: list[int] = []
        patients = Patient.objects.exclude(pdf_password_encrypted="").select_for_update()
        for patient in patients.only("pk", "pdf_password_encrypted"):
            try:
                token = crypto.rotate_for(
                    patient.pdf_password_encrypted,
                    owner_id=patient.pk,
                    purpose=crypto.PATIENT_PDF_PASSWORD,
                )
            except crypto.DecryptionError:
                failed.append(patient.pk)
                continue
            Patient.objects.filter(pk=patient.pk).update(pdf_password_encrypted=token)
            rotated += 1
        if failed:
            raise CommandError(
                f"{len(failed)} patient PDF password(s) could not be decrypted with the "
                f"configured keys (Patient ids: {', '.join(map(str, failed))}); nothing was "
                "changed. Put back the key that encrypted them and run again."
            )
        return rotated
