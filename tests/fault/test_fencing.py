"""Exactly once when a worker outlives its row's lease before the message data leaves.

A worker claims a row and then stalls inside the SMTP exchange (a server that takes longer
to answer RCPT than the row's lease lasts; a paused process looks the same). The sweeper hands
the row to a second worker, which sends it. When the first one gets its answer, its next step
finds the row is no longer its own (the attempt count is the fence) and leaves the session
without DATA: the patient receives the invoice once, and the report says "inviata" once.
The same when the first worker is frozen (SIGSTOP) after its claim and thawed once the
invoice has left. Real worker processes, the real sweeper, an aiosmtpd server counting
Message-IDs.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from emailsettings.models import Delivery, DeliveryStatus
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.sweeper import sweep
from tests.conftest import wait_until
from tests.fault.test_delivery_faults import drive, make_invoices, outbox, settled  # noqa: F401
from tests.fault.test_reliability import pool_children, slow_first_rcpt

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_send_that_outlives_its_lease_before_data_leaves_once(
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
):
    # RCPT answered after 6 s the first time: twice the 3-second lease.
    slow, behaviour = slow_first_rcpt(6.0)
    server = smtp_server_factory(behaviour=behaviour)
    smtp_account_factory(server)
    workers = [outbox(), outbox()]
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)
    wait_until(slow.started.is_set, timeout=30, message="the first worker never reached RCPT")

    # The lease runs out while the first worker waits: the sweeper hands the row over.
    drive(lambda: settled([delivery.pk], DeliveryStatus.SENT), timeout=60)
    for _ in range(6):  # the first worker gets its RCPT answer meanwhile
        time.sleep(0.5)
        sweep()

    final = Delivery.objects.get(pk=delivery.pk)
    assert final.status == DeliveryStatus.SENT
    assert final.attempts == 2
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    # The stalled worker saw the fence and left without sending.
    lost = "was claimed by another worker during this attempt: not sent"
    assert sum(lost in worker.log() for worker in workers) == 1


def test_a_worker_paused_after_its_claim_and_resumed_later_never_sends(
    outbox,  # noqa: F811
    smtp_server_factory,
    smtp_account_factory,
    practitioner,
):
    """SIGSTOP (a VM paused, a swap storm) right after the claim, past the lease; SIGCONT
    once another worker has sent the invoice: the resumed worker sends nothing."""
    slow, behaviour = slow_first_rcpt(1.0)
    server = smtp_server_factory(behaviour=behaviour)
    smtp_account_factory(server)
    first = outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)
    wait_until(slow.started.is_set, timeout=30, message="the first worker never reached RCPT")
    assert first.proc is not None
    [child] = pool_children(first.proc.pid)
    os.kill(child, signal.SIGSTOP)
    try:
        second = outbox()
        # The lease (3 s) runs out while the first worker is frozen: the sweeper hands the
        # row to the second worker, which sends it.
        drive(lambda: settled([delivery.pk], DeliveryStatus.SENT), timeout=60)
        assert Counter(server.message_ids()) == {delivery.message_id: 1}
    finally:
        os.kill(child, signal.SIGCONT)

    lost = "was claimed by another worker during this attempt: not sent"
    wait_until(
        lambda: lost in first.log(), timeout=30, message="the resumed worker never saw the fence"
    )
    for _ in range(4):
        time.sleep(0.5)
        sweep()
    final = Delivery.objects.get(pk=delivery.pk)
    assert final.status == DeliveryStatus.SENT
    assert final.attempts == 2
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    assert lost not in second.log()
