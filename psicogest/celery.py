"""The Celery app, configured from Django settings (``CELERY_*``).

Periodic jobs go in ``app.conf.beat_schedule`` below; each names a task by its dotted path
so that beat needs no import of the task modules.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psicogest.settings")

MAILBOX_QUEUE = "mailbox"
MAILBOX_TASKS = (
    "emailsettings.read_mailbox",
    "emailsettings.check_mailbox",
    "emailsettings.file_sent_copies",
)

app = Celery("psicogest")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    # A task is acknowledged only when it finishes: a worker that dies mid-task gives it back.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_soft_time_limit=120,
    task_time_limit=180,
    broker_connection_retry_on_startup=True,
    # Publishing must not hang a web request when the broker is down: fail fast, the
    # sweeper picks the row up later.
    broker_connection_timeout=2,
    # Read only by the worker's consumer and beat (publishing never retries, above and
    # below): when Redis restarts they wait for it instead of exiting. kombu reads 0 as
    # "give up on the first refused reconnect".
    broker_connection_max_retries=None,
    task_publish_retry=False,
    worker_hijack_root_logger=False,
    # What talks to a practitioner's own mailbox over IMAP (reading it, the daily check, the
    # Sent copy) has a queue of its own, consumed by its own workers: a slow or hostile
    # mailbox can hold those, never the ones that send invoices.
    task_routes={name: {"queue": MAILBOX_QUEUE} for name in MAILBOX_TASKS},
    beat_schedule={
        "worker-heartbeat": {"task": "psicogest.heartbeat", "schedule": 60.0},
        # The outbox sweeper: due retries, dead workers' rows, rows the broker never got.
        "delivery-sweeper": {"task": "emailsettings.sweep_deliveries", "schedule": 30.0},
        # A DKIM record removed after verification must stop the own-address From.
        "sender-domain-recheck": {
            "task": "emailsettings.recheck_sender_domains",
            "schedule": 24 * 3600.0,
        },
        # Bounces of personal-SMTP invoices, read from the opted-in mailboxes: the job looks
        # every minute for mailboxes whose own interval has passed
        # (EMAILSETTINGS_MAILBOX_READ_INTERVAL_SECONDS, doubled after failures).
        "mailbox-bounce-reader": {"task": "emailsettings.read_mailboxes", "schedule": 60.0},
        # Log in to every mailbox in use once a day: a changed password is found before
        # the month's invoices fail on it.
        "mailbox-health-check": {
            "task": "emailsettings.check_mailboxes",
            "schedule": 24 * 3600.0,
        },
        # Payment reminders due today, created once the practitioner's window opens on a
        # working day (a run missed while beat was down is caught up by the next one).
        "payment-reminders": {"task": "emailsettings.create_reminders", "schedule": 300.0},
        # One practitioner's bounces never get Smart Mail suspended for everyone.
        "smart-mail-reputation": {"task": "emailsettings.check_reputation", "schedule": 300.0},
        "delivery-body-purge": {
            "task": "emailsettings.purge_delivery_bodies",
            "schedule": 6 * 3600.0,
        },
    },
)
app.autodiscover_tasks()


def ensure_filesystem_broker_folders() -> None:
    """Create the embedded broker's folders (kombu's filesystem transport does not)."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


if str(app.conf.broker_url).startswith("filesystem"):
    ensure_filesystem_broker_folders()


@worker_ready.connect
def announce_worker(sender: object, **kwargs: object) -> None:
    """Beat first fires the heartbeat a minute after start: beat once now, so the pages
    stop warning that no worker is running as soon as one is."""
    app.send_task("psicogest.heartbeat")
