"""The outbox: one row per invoice email, and its one state machine. The database is the
source of truth; Celery only executes.

- ``lifecycle`` — the status groups, the one place that changes a status (with its timeline
  event), and the after-send rule (what news from a webhook, a bounce or a PEC receipt does).
- ``queueing`` — which invoices can be sent, to whom, the new rows, one transaction.
- ``publish`` — the only place that publishes tasks to the broker, on commit.
- ``dispatch`` — fair dispatch: each practitioner's worker slots and backlog.
- ``worker`` — claim → send → record, one SMTP session per batch.
- ``senders`` — Smart Mail and personal SMTP behind the ``Sender`` protocol.
- ``sweeper`` — expired leases, due retries, forgotten rows, body purge.
- ``actions`` — resend, retry now, Smart Mail fallback, reactivate, cancel or send now a
  scheduled mail, hold, resume.
- ``schedule`` — when a mail may leave ("Invia il …").
- ``sentcopy`` — the copy in the mailbox's Sent folder.
- ``reminders`` — payment reminders: which invoices, which level, which day, and the check
  that stops one right before it leaves.

The package face holds the contract only (``queue_invoice_email(s)``); everything else is
imported from its module.
"""

from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails

__all__ = ["queue_invoice_email", "queue_invoice_emails"]
