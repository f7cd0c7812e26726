"""Celery tasks of the email module. Thin: JSON-primitive arguments (ids only, never a
secret or patient data), load the row, call a service from ``mailbox`` / ``delivery``, own
only the retry decision. Enqueue with ``transaction.on_commit``.
"""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from emailsettings.backchannel.reader import due_accounts, read_mailbox
from emailsettings.backchannel.webhooks import (
    apply_pending_many,
    apply_recorded_pending,
    prune_pending,
    purge_unmatched,
)
from emailsettings.health.daily import accounts_in_use, after_batch, check_account
from emailsettings.health.reputation import check_reputation
from emailsettings.health.verify import (
    TEST_MAIL,
    VERIFY,
    record_check_abandoned,
    send_test_mail,
    verify_mailbox,
)
from emailsettings.models import SmtpAccount
from emailsettings.outbox.blips import through_blips
from emailsettings.outbox.dispatch import Dispatcher
from emailsettings.outbox.publish import publish_batches, publish_task
from emailsettings.outbox.reminders import create_due_reminders
from emailsettings.outbox.sentcopy import accounts_with_pending, file_pending
from emailsettings.outbox.sweeper import purge_bodies, sweep
from emailsettings.outbox.worker import send_batch
from emailsettings.smartmail.senderdomain import recheck_verified_domains

# --- mailbox checks ("Verifica connessione", "Invia una mail di prova") -----------------
# One-shot: no retry; a worker lost mid-check gives the task back (acks_late) and it runs
# again, which is harmless for a verify and at worst sends a second test mail to oneself.


# Each SMTP command has its own 15 s timeout; these limits bound the whole check.
CHECK_SOFT_TIME_LIMIT = 90
CHECK_TIME_LIMIT = 120


@shared_task(
    name="emailsettings.verify_mailbox",
    soft_time_limit=CHECK_SOFT_TIME_LIMIT,
    time_limit=CHECK_TIME_LIMIT,
)
def verify_mailbox_task(account_id: int) -> None:
    account = SmtpAccount.objects.select_related("practitioner").filter(pk=account_id).first()
    if account is None:
        return
    try:
        verify_mailbox(account=account)
    except SoftTimeLimitExceeded:
        record_check_abandoned(account=account, kind=VERIFY)


@shared_task(
    name="emailsettings.send_test_mail",
    soft_time_limit=CHECK_SOFT_TIME_LIMIT,
    time_limit=CHECK_TIME_LIMIT,
)
def send_test_mail_task(account_id: int) -> None:
    account = SmtpAccount.objects.select_related("practitioner").filter(pk=account_id).first()
    if account is None:
        return
    try:
        send_test_mail(account=account)
    except SoftTimeLimitExceeded:
        record_check_abandoned(account=account, kind=TEST_MAIL)


# --- the delivery outbox ----------------------------------------------------------------
# Retry waits live in the database (Delivery.next_attempt_at) and the sweeper wakes them:
# these tasks never retry themselves with a countdown. A database blip is waited out in
# the task itself (outbox.blips), holding its message and its slot.


@shared_task(name="emailsettings.send_deliveries")
def send_deliveries_task(delivery_ids: list[int], slot: str = "") -> None:
    """Send a batch of deliveries (one practitioner's, one connection); ``slot`` is the
    worker slot reserved for it when it was published. Then the webhook events that came
    during the sends are applied, the practitioner hears of held or failed invoices, and the
    Sent copies are filed."""
    ids = [int(pk) for pk in delivery_ids]
    token = str(slot or "")
    try:
        # A database blip is waited out here, in the task (no countdown: see above); sent
        # rows are not waiting any more, so a batch run again sends only what is left.
        result = through_blips(lambda: send_batch(delivery_ids=ids, slot=token), what="a batch")
        # Webhook events that arrived while these rows were being sent, in one query.
        through_blips(lambda: apply_pending_many(result.smart_mail_sent), what="webhook events")
        after_batch(ids, attempted=result.outcomes.keys())
    finally:
        # A batch that never took its reserved slot (its first query failed, the database
        # stayed away) gives it back: its rows stay queued for the sweeper, and the
        # practitioner's other batches are not kept waiting for a reservation nobody uses.
        dispatcher = Dispatcher()
        practitioner_id, batches = dispatcher.cancel_reservation(token)
        publish_batches(dispatcher, practitioner_id, batches)
    _file_sent_copies_soon()


def _file_sent_copies_soon() -> None:
    for account_id in accounts_with_pending():
        publish_task("emailsettings.file_sent_copies", [account_id])


@shared_task(name="emailsettings.sweep_deliveries")
def sweep_deliveries_task() -> None:
    """Settle dead workers' rows, wake due retries, re-publish forgotten rows (beat)."""
    sweep()
    apply_recorded_pending()
    prune_pending()


@shared_task(name="emailsettings.create_reminders")
def create_reminders_task() -> None:
    """Create the payment reminders due now (beat, every few minutes)."""
    create_due_reminders()


@shared_task(name="emailsettings.purge_delivery_bodies")
def purge_delivery_bodies_task() -> None:
    """Drop old message bodies (the delivery records stay) and the webhook events that never
    matched a delivery (beat, every 6 hours)."""
    purge_bodies()
    purge_unmatched()


@shared_task(name="emailsettings.recheck_sender_domains")
def recheck_sender_domains_task() -> None:
    """Re-verify the practitioners' sender domains (beat, daily)."""
    recheck_verified_domains()


# --- reading bounces back from the practitioners' own mailboxes --------------------------


@shared_task(name="emailsettings.read_mailboxes")
def read_mailboxes_task() -> None:
    """One read task per opted-in mailbox that is due and has recent sends (beat)."""
    for account_id in due_accounts():
        publish_task("emailsettings.read_mailbox", [account_id])
    _file_sent_copies_soon()


@shared_task(
    name="emailsettings.read_mailbox",
    soft_time_limit=CHECK_SOFT_TIME_LIMIT,
    time_limit=CHECK_TIME_LIMIT,
)
def read_mailbox_task(account_id: int) -> None:
    account = SmtpAccount.objects.filter(pk=account_id, imap_enabled=True).first()
    if account is not None:
        read_mailbox(account)


# --- the daily health check of the personal mailboxes ---------------------------------------


@shared_task(name="emailsettings.check_mailboxes")
def check_mailboxes_task() -> None:
    """One check task per mailbox in use (beat, daily)."""
    for account_id in accounts_in_use():
        publish_task("emailsettings.check_mailbox", [account_id])


@shared_task(
    name="emailsettings.check_mailbox",
    soft_time_limit=CHECK_SOFT_TIME_LIMIT,
    time_limit=CHECK_TIME_LIMIT,
)
def check_mailbox_task(account_id: int) -> None:
    account = SmtpAccount.objects.select_related("practitioner").filter(pk=account_id).first()
    if account is not None:
        check_account(account)


@shared_task(
    name="emailsettings.file_sent_copies",
    soft_time_limit=CHECK_SOFT_TIME_LIMIT,
    time_limit=CHECK_TIME_LIMIT,
)
def file_sent_copies_task(account_id: int) -> None:
    """File the mailbox's sent invoice mails in its Sent folder (IMAP APPEND)."""
    account = SmtpAccount.objects.filter(pk=account_id).first()
    if account is not None:
        file_pending(account)


# --- the Smart Mail reputation guard -------------------------------------------------------


@shared_task(name="emailsettings.check_reputation")
def check_reputation_task() -> None:
    """Measure every practitioner's Smart Mail bounces and complaints; warn, or hold a
    suspended practitioner's Smart Mail queue (beat, every 5 minutes)."""
    check_reputation()


@shared_task(name="emailsettings.check_practitioner_reputation")
def check_practitioner_reputation_task(practitioner_id: int) -> None:
    """One practitioner at once, after a hard bounce or a complaint arrived."""
    check_reputation(practitioner_ids=[practitioner_id])
