"""Reading the practitioner's own mailbox for bounces (opt-in: "Leggi le risposte").

Only while the mailbox has personal-SMTP sends in the watch window
(``EMAILSETTINGS_BOUNCE_WATCH_DAYS``). The INBOX and the provider's spam folder are opened
read-only (EXAMINE) and only messages since the oldest watched send are searched; each UID
is looked at once (:class:`~emailsettings.models.MailboxFolderState`, reset when the
folder's UIDVALIDITY changes). Headers and structure come first; only what looks like an
automatic notice (a report, a returned message, a null sender, ``MAILER-DAEMON``) is fetched
whole, always with ``BODY.PEEK``: nothing is marked read, moved or deleted, and nothing of
the practitioner's other mail is stored.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import Any

import imapclient
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.backchannel import bounces, pec, wire
from emailsettings.exceptions import ImapError
from emailsettings.mailbox import presets
from emailsettings.mailbox.imap import open_for_account
from emailsettings.models import Channel, Delivery, MailboxFolderState, SmtpAccount

logger = logging.getLogger(__name__)

# Headers and structure are fetched CHUNK messages at a time (small); each notice's body
# alone, its size checked first.
CHUNK = 50
MAX_BACKOFF = datetime.timedelta(hours=6)
# A read that ran out of time goes on at the next beat.
_SOON = datetime.timedelta(seconds=60)
_HEADERS = b"BODY[HEADER.FIELDS (FROM RETURN-PATH AUTO-SUBMITTED CONTENT-TYPE X-RICEVUTA)]"
_FETCH_HEADERS = ["RFC822.SIZE", "BODYSTRUCTURE", _HEADERS.replace(b"BODY", b"BODY.PEEK", 1)]
_SYSTEM_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mdaemon"})
_NOTICE_TYPES = frozenset(
    {"multipart/report", "message/delivery-status", "message/rfc822", "text/rfc822-headers"}
)


@dataclass
class ReadResult:
    ok: bool
    looked_at: int = 0
    # Bounces and PEC receipts matched to a delivery.
    bounces: int = 0
    error: str = ""
    # False: the read's time ran out; the next one goes on from there, soon.
    finished: bool = True
    # Another worker was reading the mailbox: nothing done, nothing recorded.
    overlapped: bool = False


def _watch_window() -> datetime.timedelta:
    return datetime.timedelta(days=conf.bounce_watch_days())


def oldest_watched_send(account: SmtpAccount, now: datetime.datetime) -> datetime.datetime | None:
    return (
        Delivery.objects.filter(
            practitioner_id=account.practitioner_id,
            channel=Channel.SMTP,
            sent_at__gte=now - _watch_window(),
        )
        .order_by("sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )


def due_accounts(now: datetime.datetime | None = None) -> list[int]:
    """Opted-in mailboxes due for a read that have sends in the watch window."""
    now = now or timezone.now()
    recent = Delivery.objects.filter(channel=Channel.SMTP, sent_at__gte=now - _watch_window())
    return list(
        SmtpAccount.objects.filter(imap_enabled=True, practitioner__deliveries__in=recent)
        .exclude(imap_next_read_at__gt=now)
        .distinct()
        .values_list("pk", flat=True)
    )


def _types(structure: Any) -> Iterator[str]:
    if structure.is_multipart:
        yield "multipart/" + structure[1].decode("ascii", "replace").lower()
        for part in structure[0]:
            yield from _types(part)
    else:
        main, sub = structure[0], structure[1]
        yield f"{main.decode('ascii', 'replace')}/{sub.decode('ascii', 'replace')}".lower()


def looks_automatic(data: dict[bytes, Any]) -> bool:
    """Whether a message's headers and structure look like an automatic notice."""
    if int(data.get(b"RFC822.SIZE", 0)) > conf.mailbox_max_message_bytes():
        return False
    # The server echoes the item name in its own spelling: find it by its prefix.
    raw_headers = next(
        (value for key, value in data.items() if key.upper().startswith(b"BODY[HEADER")), b""
    )
    headers = BytesHeaderParser().parsebytes(raw_headers or b"")
    if headers.get("X-Ricevuta") or str(headers.get("Return-Path", "")).strip() == "<>":
        return True
    auto = str(headers.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    sender = parseaddr(str(headers.get("From", "")))[1].lower()
    if sender.partition("@")[0] in _SYSTEM_SENDERS:
        return True
    structure = data.get(b"BODYSTRUCTURE")
    return structure is not None and any(kind in _NOTICE_TYPES for kind in _types(structure))


def _read_folder(
    client: imapclient.IMAPClient,
    account: SmtpAccount,
    folder: str,
    since: datetime.date,
    deadline: float,
) -> tuple[int, int, bool]:
    """Look at the folder's new messages; (looked at, notices of ours, finished)."""
    info = client.select_folder(folder, readonly=True)
    uidvalidity = int(info.get(b"UIDVALIDITY", 0))
    state, _created = MailboxFolderState.objects.get_or_create(account=account, folder=folder)
    if state.uidvalidity != uidvalidity:
        state.uidvalidity, state.last_uid = uidvalidity, 0
    uids = sorted(uid for uid in client.search(["SINCE", since]) if uid > state.last_uid)
    looked_at = found = 0
    for start in range(0, len(uids), CHUNK):
        chunk = uids[start : start + CHUNK]
        heads = client.fetch(chunk, _FETCH_HEADERS)
        for uid in chunk:
            # Out of time, with at least one message done: every read moves on.
            if looked_at and time.monotonic() > deadline:
                return looked_at, found, False
            looked_at += 1
            if uid not in heads or not looks_automatic(heads[uid]):
                continue
            # Moved past it before reading it: a message that stops the read (time, a
            # crash) is read once, never again.
            _save(state, uid)
            if _read_message(client, uid, account):
                found += 1
        _save(state, chunk[-1])
    _save(state, state.last_uid)
    return looked_at, found, True


def _save(state: MailboxFolderState, last_uid: int) -> None:
    state.last_uid = last_uid
    state.read_at = timezone.now()
    state.save()


def _read_message(client: imapclient.IMAPClient, uid: int, account: SmtpAccount) -> bool:
    """Fetch one notice (its size already checked) and record it; whether it was ours. A
    message that cannot be read is logged and skipped: it is evidence, never a reason to
    stop reading the others."""
    raw = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
    if not raw:
        return False
    if len(raw) > conf.mailbox_max_message_bytes() or wire.too_complex(raw):
        logger.info("Message %s of mailbox %s skipped: too large or too complex", uid, account.pk)
        return False
    try:
        return _notice(raw, account)
    except SoftTimeLimitExceeded:
        raise
    except Exception as err:  # written by anyone: skip it, read the others
        logger.warning("Message %s of mailbox %s skipped: %s", uid, account.pk, type(err).__name__)
        return False


def _notice(raw: bytes, account: SmtpAccount) -> bool:
    """Record a PEC receipt or a bounce found in the mailbox; whether it was one of ours."""
    practitioner_id = account.practitioner_id
    receipt = pec.parse(raw)
    if receipt is not None:
        if not presets.reads_pec_receipts(account.preset):
            # Only a PEC mailbox gets receipts: elsewhere one is somebody's imitation.
            logger.info("PEC receipt in mailbox %s, which is not PEC: ignored", account.pk)
            return False
        return pec.apply(pec.verify(receipt), practitioner_id=practitioner_id) is not None
    bounce = bounces.parse(raw)
    return bounce is not None and bool(
        bounces.apply(bounce, practitioner_id=practitioner_id, window=_watch_window())
    )


def _folders(client: imapclient.IMAPClient) -> list[str]:
    folders = ["INBOX"]
    try:
        junk = client.find_special_folder(imapclient.imapclient.JUNK)
    except imapclient.exceptions.IMAPClientError:
        junk = None
    if junk and junk not in folders:
        folders.append(junk)
    return folders


def _search_since(moment: datetime.datetime) -> datetime.date:
    """The date for IMAP ``SINCE`` that finds every message from ``moment`` on. A server
    compares its own internal dates, in its own time zone (RFC 3501 ignores the zone), so
    the day before ``moment``'s date: a few old messages more, none missed."""
    return (moment - datetime.timedelta(days=1)).date()


def _lease_key(account_id: int) -> str:
    return f"emailsettings:mailbox-read:{account_id}"


def read_mailbox(account: SmtpAccount, *, now: datetime.datetime | None = None) -> ReadResult:
    """Read ``account``'s mailbox once for bounces and record the outcome on it. Reads of
    one mailbox never overlap (a lease), and one read lasts at most
    ``EMAILSETTINGS_MAILBOX_READ_SECONDS``: what is left waits for the next."""
    now = now or timezone.now()
    oldest = oldest_watched_send(account, now)
    if oldest is None:
        return _finish(account, now, ReadResult(ok=True))
    budget = conf.mailbox_read_seconds()
    token = uuid.uuid4().hex
    if not cache.add(_lease_key(account.pk), token, timeout=int(budget) + 60):
        logger.info("Mailbox %s is being read by another worker", account.pk)
        return ReadResult(ok=True, overlapped=True)
    try:
        result = _read(account, oldest, deadline=time.monotonic() + budget)
    finally:
        if cache.get(_lease_key(account.pk)) == token:
            cache.delete(_lease_key(account.pk))
    return _finish(account, now, result)


def _read(account: SmtpAccount, oldest: datetime.datetime, *, deadline: float) -> ReadResult:
    try:
        client = open_for_account(account)
    except ImapError as err:
        return ReadResult(ok=False, error=str(err))
    result = ReadResult(ok=True)
    try:
        for folder in _folders(client):
            looked_at, found, finished = _read_folder(
                client, account, folder, since=_search_since(oldest), deadline=deadline
            )
            result.looked_at += looked_at
            result.bounces += found
            if not finished:
                result.finished = False
                break
    except (OSError, imapclient.exceptions.IMAPClientError) as err:
        logger.warning("Reading mailbox %s stopped: %s", account.pk, type(err).__name__)
        result = ReadResult(
            ok=False,
            error=_("La lettura della casella si è interrotta; PsicoGest riprova più tardi."),
            looked_at=result.looked_at,
        )
    except SoftTimeLimitExceeded:
        logger.warning("Reading mailbox %s ran out of time", account.pk)
        result = ReadResult(
            ok=False,
            error=_(
                "La lettura della casella ha richiesto troppo tempo; PsicoGest riprova più tardi."
            ),
            looked_at=result.looked_at,
        )
    finally:
        try:
            client.logout()
        except (OSError, imapclient.exceptions.IMAPClientError, SoftTimeLimitExceeded):
            client.shutdown()
    return result


def _finish(account: SmtpAccount, now: datetime.datetime, result: ReadResult) -> ReadResult:
    interval = datetime.timedelta(seconds=conf.mailbox_read_interval_seconds())
    if result.ok:
        account.imap_read_at, account.imap_failures, account.imap_error = now, 0, ""
        account.imap_next_read_at = now + (interval if result.finished else _SOON)
    else:
        account.imap_failures = min(account.imap_failures + 1, 30)
        account.imap_error = result.error[:300]
        account.imap_next_read_at = now + min(
            interval * 2 ** min(account.imap_failures, 10), MAX_BACKOFF
        )
    SmtpAccount.objects.filter(pk=account.pk).update(
        imap_read_at=account.imap_read_at,
        imap_failures=account.imap_failures,
        imap_error=account.imap_error,
        imap_next_read_at=account.imap_next_read_at,
    )
    return result
