"""The delivery outbox. The database is the source of truth; Celery only executes.

- ``lifecycle`` — the status groups and the one place that changes a status (with its
  timeline event): :func:`~.lifecycle.transition`, claim, record, next_status, backoff.
- ``queueing`` — which invoices can be sent, the new rows, one transaction.
- ``publish`` — the only place that publishes tasks to the broker, on commit.
- ``worker`` — claim → send → record, one SMTP session per batch.
- ``senders`` — Smart Mail and personal SMTP behind the ``Sender`` protocol.
- ``sweeper`` — expired leases, due retries, forgotten rows, body purge.
- ``actions`` — resend, retry now, Smart Mail fallback, reactivate, cancel or send now a
  scheduled mail, hold, resume.
- ``tracking`` — ESP webhook events.

This package re-exports the contract (``queue_invoice_email(s)``) and the services other
modules call.
"""

from .actions import (
    cancel_scheduled,
    hold_pending,
    reactivate_address,
    resend,
    resume_held,
    retry_now,
    send_now,
    send_with_smart_mail,
)
from .lifecycle import backoff_seconds
from .publish import publish_deliveries, publish_ids
from .queueing import (
    check_recipient,
    invoice_recipients,
    queue_invoice_batch,
    queue_invoice_email,
    queue_invoice_emails,
    sending_mailbox,
)
from .sweeper import purge_bodies, sweep
from .tracking import record_tracking_event
from .worker import BatchResult, send_batch

__all__ = [
    "BatchResult",
    "backoff_seconds",
    "cancel_scheduled",
    "check_recipient",
    "hold_pending",
    "invoice_recipients",
    "publish_deliveries",
    "publish_ids",
    "purge_bodies",
    "queue_invoice_batch",
    "queue_invoice_email",
    "queue_invoice_emails",
    "reactivate_address",
    "record_tracking_event",
    "resend",
    "resume_held",
    "retry_now",
    "send_batch",
    "send_now",
    "send_with_smart_mail",
    "sending_mailbox",
    "sweep",
]
