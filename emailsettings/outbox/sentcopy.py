"""A copy of each invoice mail in the mailbox's Sent folder, like a mail client keeps.

After the server accepted a message, its exact bytes are kept (:func:`keep`) and filed by
IMAP ``APPEND`` in the Sent folder — found by SPECIAL-USE ``\\Sent`` (RFC 6154), then by its
usual names — flagged ``\\Seen`` and dated when it was sent (:func:`file_pending`); then the
bytes are dropped. Optional per mailbox (``SmtpAccount.sent_copy``, on by default) and never
for Gmail, whose SMTP server files sent mail by itself. A failing append never changes the
delivery's outcome: it is retried a few times, then noted on the delivery's timeline.
"""

from __future__ import annotations

import datetime
import logging

import imapclient
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from emailsettings.exceptions import ImapError
from emailsettings.mailbox import presets
from emailsettings.mailbox.imap import open_for_account, server_for
from emailsettings.models import Delivery, EventKind, SentCopy, SentCopyState, SmtpAccount
from emailsettings.outbox import lifecycle

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_AFTER = datetime.timedelta(minutes=5)
# How long a worker filing a copy keeps it; one that died meanwhile leaves it to the next.
FILING_LEASE = datetime.timedelta(minutes=10)
# Names mail clients and providers give the Sent folder, after SPECIAL-USE and imapclient's.
SENT_NAMES = ("Posta inviata", "Inviati", "Elementi inviati", "INBOX.Sent", "INBOX/Sent")


def wanted(account: SmtpAccount) -> bool:
    preset = presets.get_preset(account.preset)
    if not account.sent_copy or (preset is not None and preset.family == "google"):
        return False
    return server_for(account) is not None


def keep(account: SmtpAccount, delivery_id: int, data: bytes) -> None:
    """Keep the bytes just accepted by the server, to file them in Sent."""
    if wanted(account):
        SentCopy.objects.get_or_create(
            delivery_id=delivery_id, defaults={"account": account, "raw": data}
        )


def accounts_with_pending(now: datetime.datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(
        SentCopy.objects.filter(state=SentCopyState.PENDING, next_attempt_at__lte=now)
        .values_list("account_id", flat=True)
        .distinct()
    )


def _sent_folder(client: imapclient.IMAPClient) -> str | None:
    found = client.find_special_folder(imapclient.imapclient.SENT)
    if found:
        return str(found)
    names = {str(folder[2]) for folder in client.list_folders()}
    return next((name for name in SENT_NAMES if name in names), None)


def file_pending(account: SmtpAccount, *, now: datetime.datetime | None = None) -> int:
    """File ``account``'s due copies; how many were filed."""
    now = now or timezone.now()
    due = list(
        SentCopy.objects.filter(
            account=account, state=SentCopyState.PENDING, next_attempt_at__lte=now
        ).select_related("delivery")[:200]
    )
    # Each copy is claimed first (a lease on ``next_attempt_at``): two workers filing the
    # same mailbox at once (a batch's end and the beat) append it once.
    due = [
        copy
        for copy in due
        if SentCopy.objects.filter(
            pk=copy.pk, state=SentCopyState.PENDING, next_attempt_at__lte=now
        ).update(next_attempt_at=now + FILING_LEASE)
    ]
    if not due:
        return 0
    try:
        client = open_for_account(account)
    except ImapError as err:
        for copy in due:
            _failed(copy, str(err), now)
        return 0
    filed = 0
    try:
        folder = _sent_folder(client)
        for copy in due:
            if folder is None:
                _failed(
                    copy, _("la casella non ha una cartella della posta inviata"), now, last=True
                )
                continue
            try:
                client.append(
                    folder,
                    bytes(copy.raw),
                    flags=[imapclient.SEEN],
                    msg_time=copy.delivery.sent_at or copy.created_at,
                )
            except (imapclient.exceptions.IMAPClientError, OSError) as err:
                _failed(copy, type(err).__name__, now)
                continue
            SentCopy.objects.filter(pk=copy.pk).update(
                state=SentCopyState.FILED, raw=b"", attempts=copy.attempts + 1
            )
            filed += 1
    finally:
        try:
            client.logout()
        except (OSError, imapclient.exceptions.IMAPClientError):
            client.shutdown()
    return filed


def _failed(copy: SentCopy, reason: str, now: datetime.datetime, *, last: bool = False) -> None:
    attempts = copy.attempts + 1
    if attempts < MAX_ATTEMPTS and not last:
        SentCopy.objects.filter(pk=copy.pk).update(
            attempts=attempts, next_attempt_at=now + RETRY_AFTER * 2**attempts
        )
        return
    SentCopy.objects.filter(pk=copy.pk).update(
        attempts=attempts, state=SentCopyState.FAILED, raw=b""
    )
    text: str | lifecycle.EventText = gettext_noop(
        "La copia nella posta inviata della casella non è stata salvata."
    )
    if reason:
        text = lifecycle.EventText(
            gettext_noop(
                "La copia nella posta inviata della casella non è stata salvata: %(reason)s."
            ),
            {"reason": reason},
        )
    status = Delivery.objects.only("status").get(pk=copy.delivery_id).status
    lifecycle.transition(
        Delivery.objects.filter(pk=copy.delivery_id, status=status),
        to=status,
        text=text,
        kind=EventKind.MAILBOX,
    )
