"""Reliability scenarios of the outbox with the real parts (PostgreSQL, Redis, Celery worker
processes, aiosmtpd servers): a pool child killed before DATA, a worker killed after the
data was accepted, Redis restarted without persistence, tasks given stale ids, and no
countdown/ETA anywhere (a delayed task would sit in Redis beyond the visibility timeout).

Each scenario counts what the SMTP server received by Message-ID. Beat is not running: the
tests call the sweeper in process, as beat would (``drive``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from devtools.smtpserver import Behaviour
from emailsettings.models import Delivery, DeliveryStatus, MailboxStatus
from emailsettings.outbox.publish import publish_ids
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails
from emailsettings.outbox.sweeper import sweep
from tests.conftest import wait_until
from tests.fault.test_broker_outage import own_redis  # noqa: F401
from tests.fault.test_delivery_faults import FAST, drive, make_invoices, outbox, settled  # noqa: F401

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SEND_TASK = "emailsettings.send_deliveries"


def row(pk: int) -> Delivery:
    return Delivery.objects.get(pk=pk)


def pool_children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (the prefork pool's children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        match = re.search(r"^PPid:\s*(\d+)", status, re.M)
        if match and int(match.group(1)) == pid:
            children.append(int(entry.name))
    return children


class SlowOnce:
    """Blocks the server's event loop for ``seconds`` the first time it is asked (the
    connection's peer may die meanwhile; the server only notices afterwards)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.started.set()
            time.sleep(self.seconds)


# --- a. a pool child SIGKILLed before DATA -----------------------------------------------


def test_pool_child_killed_before_data_is_retried_and_sent_once(
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
):
    slow, behaviour = slow_first_rcpt(4.0)
    server = smtp_server_factory(behaviour=behaviour)
    smtp_account_factory(server)
    worker = outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)

    wait_until(slow.started.is_set, timeout=30, message="the worker never reached RCPT")
    current = row(delivery.pk)
    assert current.status == DeliveryStatus.SENDING
    assert current.phase == "rcpt"
    assert worker.proc is not None
    children = pool_children(worker.proc.pid)
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGKILL)
    # The main process survives the child (it forks a new one); the row stays claimed
    # until its lease expires, then the sweeper gives it back.
    time.sleep(0.5)
    assert worker.proc.poll() is None
    assert row(delivery.pk).status == DeliveryStatus.SENDING

    drive(lambda: settled([delivery.pk], DeliveryStatus.SENT), timeout=60)
    time.sleep(1.0)
    sweep()
    time.sleep(1.0)

    final = row(delivery.pk)
    assert final.status == DeliveryStatus.SENT
    assert final.attempts == 2
    assert Counter(server.message_ids()) == {delivery.message_id: 1}


def slow_first_rcpt(seconds: float) -> tuple[SlowOnce, Behaviour]:
    """A server that answers each address's first RCPT after ``seconds`` (its event loop
    blocked meanwhile), and the handle that says when that began."""
    slow = SlowOnce(seconds)

    def rcpt_reply(address: str, attempt: int) -> str | None:
        if attempt == 1:
            slow()
        return None

    return slow, Behaviour(rcpt_reply=rcpt_reply)


def test_worker_killed_before_data_new_worker_sends_once(
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
):
    slow = SlowOnce(4.0)

    def slow_first_rcpt(address: str, attempt: int) -> str | None:
        if attempt == 1:
            slow()
        return None

    server = smtp_server_factory(behaviour=Behaviour(rcpt_reply=slow_first_rcpt))
    smtp_account_factory(server)
    worker = outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)

    wait_until(slow.started.is_set, timeout=30, message="the worker never reached RCPT")
    assert row(delivery.pk).phase == "rcpt"
    worker.kill()
    assert row(delivery.pk).status == DeliveryStatus.SENDING

    outbox()
    drive(lambda: settled([delivery.pk], DeliveryStatus.SENT), timeout=60)
    for _ in range(3):
        time.sleep(0.5)
        sweep()

    final = row(delivery.pk)
    assert final.status == DeliveryStatus.SENT
    assert final.attempts == 2
    assert Counter(server.message_ids()) == {delivery.message_id: 1}


# --- b. a kill after DATA was accepted ---------------------------------------------------


class SlowFinalReply(Behaviour):
    """The server has the whole message (it keeps it) but answers the final dot slowly: the
    client is waiting in phase ``data_sent`` when it dies."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.slow = SlowOnce(seconds)

    def next_data_reply(self) -> str | None:
        self.slow()
        return super().next_data_reply()


def test_worker_killed_after_data_accepted_is_unknown_one_copy_never_resent(
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
):
    behaviour = SlowFinalReply(5.0)
    server = smtp_server_factory(behaviour=behaviour)
    smtp_account_factory(server)
    worker = outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)

    wait_until(behaviour.slow.started.is_set, timeout=30, message="the data never arrived")
    wait_until(
        lambda: row(delivery.pk).phase == "data_sent",
        timeout=3,
        interval=0.05,
        message="the worker did not record data_sent before waiting for the reply",
    )
    worker.kill()
    assert row(delivery.pk).status == DeliveryStatus.SENDING
    wait_until(lambda: len(server.messages) == 1, timeout=10)

    outbox()
    drive(lambda: settled([delivery.pk], DeliveryStatus.UNKNOWN), timeout=60)
    for _ in range(6):
        time.sleep(0.5)
        sweep()

    final = row(delivery.pk)
    assert final.status == DeliveryStatus.UNKNOWN
    assert final.attempts == 1
    assert final.phase == "data_sent"
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    invoice.refresh_from_db()
    assert invoice.last_emailed_at is None


# --- c. Redis restarted without persistence while tasks were queued ----------------------


def _redis():
    import redis

    return redis.Redis.from_url(os.environ["REDIS_URL"])


def test_redis_flushed_with_tasks_queued_sweeper_sends_each_once(
    outbox,  # noqa: F811
    smtp_server,
    smtp_account_factory,
    practitioner,
):
    smtp_account_factory(smtp_server)
    invoices = make_invoices(practitioner, 5)

    deliveries = queue_invoice_emails(invoices)  # no worker: the tasks wait
    ids = [d.pk for d in deliveries]
    client = _redis()
    assert client.llen("celery") >= 1
    assert settled(ids, DeliveryStatus.QUEUED)

    client.flushall()  # a restart without persistence: every queued task is gone
    assert client.llen("celery") == 0

    outbox()
    time.sleep(1.2)  # past EMAILSETTINGS_STALE_QUEUED_SECONDS
    drive(lambda: settled(ids, DeliveryStatus.SENT), timeout=60)
    for _ in range(4):
        time.sleep(0.5)
        sweep()

    assert settled(ids, DeliveryStatus.SENT)
    assert Counter(smtp_server.message_ids()) == {d.message_id: 1 for d in deliveries}
    assert [row(pk).attempts for pk in ids] == [1] * 5


# --- d. a task given a stale id or another tenant's id -----------------------------------


def _run_task(worker, ids: list[int]) -> None:
    from psicogest.celery import app

    result = app.send_task(SEND_TASK, args=[ids])
    wait_until(
        lambda: f"[{result.id}] succeeded" in worker.log(),
        timeout=30,
        message=f"task {result.id} did not finish:\n{worker.log()[-2000:]}",
    )


def test_task_with_stale_or_other_tenants_id_is_a_no_op(
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
    other_practitioner,
):
    from emailsettings.models import Channel, EmailSettings, EventKind

    server = smtp_server_factory()
    smtp_account_factory(server)
    # The other practitioner's mailbox is broken: their invoice is held, not waiting.
    EmailSettings.objects.update_or_create(
        practitioner=other_practitioner, defaults={"channel": Channel.SMTP}
    )
    other_server = smtp_server_factory()
    smtp_account_factory(other_server, practitioner=other_practitioner, status=MailboxStatus.BROKEN)
    worker = outbox()
    [invoice] = make_invoices(practitioner, 1)
    [other_invoice] = make_invoices(other_practitioner, 1, domain="altro.test")

    sent = queue_invoice_email(invoice)
    wait_until(lambda: settled([sent.pk], DeliveryStatus.SENT), timeout=30)
    held = queue_invoice_email(other_invoice)
    assert row(held.pk).status == DeliveryStatus.HELD

    def snapshot():
        return [
            (r.pk, r.status, r.attempts, r.phase, r.events.filter(kind=EventKind.ATTEMPT).count())
            for r in Delivery.objects.filter(pk__in=[sent.pk, held.pk]).order_by("pk")
        ]

    before = snapshot()
    missing = max(sent.pk, held.pk) + 10_000
    for ids in ([sent.pk], [held.pk], [sent.pk, held.pk, missing], [missing]):
        _run_task(worker, ids)
    time.sleep(0.5)
    sweep()

    assert snapshot() == before
    assert Counter(server.message_ids()) == {sent.message_id: 1}
    assert other_server.messages == [] and other_server.connections == 0
    assert "Unexpected error" not in worker.log()


# --- e. no countdown / ETA anywhere ------------------------------------------------------

_DELAYED_TASK = [
    (re.compile(r"\bcountdown\s*="), "countdown="),
    (re.compile(r"\beta\s*="), "eta="),
    (re.compile(r"apply_async\s*\("), "apply_async("),
    (re.compile(r"\.retry\s*\("), ".retry("),
    (re.compile(r"\b(autoretry_for|retry_backoff|default_retry_delay)\b"), "auto-retry"),
]


def _code_lines(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield number, code


def test_no_countdown_eta_or_task_retry_in_the_product():
    """Retry waits live in the database and the sweeper wakes them. A countdown or ETA
    would keep a task unacknowledged in Redis, redelivered after the visibility timeout (a
    duplicate) or lost with a restart: fail as soon as one is introduced."""
    found = []
    for package in ("emailsettings", "psicogest"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, code in _code_lines(path):
                for pattern, label in _DELAYED_TASK:
                    if pattern.search(code):
                        found.append(f"{path.relative_to(ROOT)}:{number}: {label} {code.strip()}")
    assert found == [], "\n".join(found)


def test_published_send_tasks_carry_no_eta(smtp_server, smtp_account_factory, practitioner):
    """What actually reaches Redis: no eta, no expiry, on every send task."""
    from emailsettings.models import Channel, EmailSettings

    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )
    smtp_account_factory(smtp_server)
    deliveries = queue_invoice_emails(make_invoices(practitioner, 3))
    publish_ids([d.pk for d in deliveries])

    raw = _redis().lrange("celery", 0, -1)
    assert raw, "no task was published"
    for item in raw:
        message = json.loads(item)
        headers = message["headers"]
        assert headers["task"] == SEND_TASK
        assert headers.get("eta") is None
        assert headers.get("expires") is None
        assert headers.get("countdown") is None


def test_redis_restarted_under_a_busy_worker_sweeper_sends_each_once(
    own_redis,  # noqa: F811
    settings,
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
    other_practitioner,
    celery_worker_factory,
    local_ca,
):
    """A real restart (a private redis-server, no persistence) while the only worker slot is
    busy and another practitioner's task waits in Redis: the worker reconnects, the busy
    send completes, and the sweeper re-publishes the lost task; each message arrives once."""
    from emailsettings.models import Channel, EmailSettings

    settings.REDIS_URL = own_redis.url
    # The dispatcher's slots and backlogs live in the broker's Redis, like the tasks: the
    # restart loses both (conf.redis_url reads the broker URL).
    settings.CELERY_BROKER_URL = own_redis.url
    slow = SlowOnce(5.0)

    def slow_first_rcpt(address: str, attempt: int) -> str | None:
        if attempt == 1:
            slow()
        return None

    busy_server = smtp_server_factory(behaviour=Behaviour(rcpt_reply=slow_first_rcpt))
    smtp_account_factory(busy_server)
    EmailSettings.objects.update_or_create(
        practitioner=other_practitioner, defaults={"channel": Channel.SMTP}
    )
    waiting_server = smtp_server_factory()
    smtp_account_factory(waiting_server, practitioner=other_practitioner)
    # A lease longer than the slow send: the sweeper must not take the busy row back.
    worker = celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file,
        REDIS_URL=own_redis.url,
        **{**FAST, "EMAILSETTINGS_LEASE_SECONDS": "30"},
    )

    [busy] = queue_invoice_emails(make_invoices(practitioner, 1))
    wait_until(slow.started.is_set, timeout=30, message="the worker never reached RCPT")
    waiting = queue_invoice_emails(make_invoices(other_practitioner, 3, domain="altro.test"))
    waiting_ids = [d.pk for d in waiting]
    assert settled(waiting_ids, DeliveryStatus.QUEUED)

    own_redis.stop()
    time.sleep(1.0)  # a restart takes a moment: the worker sees it down, then back
    own_redis.start()  # empty, no persistence: the waiting task is gone

    ids = [busy.pk, *waiting_ids]
    time.sleep(1.2)  # past EMAILSETTINGS_STALE_QUEUED_SECONDS
    try:
        drive(lambda: settled(ids, DeliveryStatus.SENT), timeout=60)
    except AssertionError:
        rows = list(Delivery.objects.filter(pk__in=ids).values_list("pk", "status", "phase"))
        raise AssertionError(f"{rows}\nworker log:\n{worker.log()[-3000:]}") from None
    for _ in range(4):
        time.sleep(0.5)
        sweep()

    assert settled(ids, DeliveryStatus.SENT)
    assert Counter(busy_server.message_ids()) == {busy.message_id: 1}
    assert Counter(waiting_server.message_ids()) == {d.message_id: 1 for d in waiting}
    assert [row(pk).attempts for pk in ids] == [1] * 4
