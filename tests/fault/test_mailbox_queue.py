"""Reading mailboxes never holds a sending worker: the IMAP tasks have a queue of their own.

Two practitioners' mailboxes whose IMAP servers accept the connection and then say nothing
(as a hostile or overloaded server does) hold both workers of the mailbox queue for as long
as their reads last; meanwhile a third practitioner's invoice leaves at once through the
sending workers. Real worker processes, the real broker and database.
"""

from __future__ import annotations

import socket
import threading

import pytest
from django.db import transaction
from django.utils import timezone

from emailsettings.models import Delivery, DeliveryStatus, SmtpAccount
from emailsettings.outbox.publish import publish_task
from emailsettings.outbox.queueing import queue_invoice_email
from tests.conftest import wait_until
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.worker


class SilentImap:
    """Accepts connections on loopback and never answers; counts who is waiting."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.waiting: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            self.waiting.append(conn)

    def still_waiting(self) -> int:
        alive = 0
        for conn in self.waiting:
            try:
                conn.setblocking(False)
                alive += conn.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        self.listener.close()
        for conn in self.waiting:
            conn.close()


@pytest.fixture
def silent_imap():
    server = SilentImap()
    yield server
    server.close()


def poisoned_mailbox(smtp_account_factory, port: int) -> SmtpAccount:
    practitioner = PractitionerFactory()
    account = smtp_account_factory(
        None,
        practitioner=practitioner,
        imap_enabled=True,
        imap_host="127.0.0.1",
        imap_port=port,
        imap_security="ssl",
    )
    # A recent personal-SMTP send: the mailbox is worth reading.
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    DeliveryFactory(invoice=invoice, channel="smtp", status="sent", sent_at=timezone.now())
    return account


def test_two_stalled_mailbox_reads_do_not_delay_another_practitioners_invoice(
    celery_worker_factory, smtp_account_factory, silent_imap
):
    celery_worker_factory(concurrency=2, queues="celery")
    readers = celery_worker_factory(concurrency=2, queues="mailbox")
    accounts = [poisoned_mailbox(smtp_account_factory, silent_imap.port) for _ in range(2)]
    for account in accounts:
        assert publish_task("emailsettings.read_mailbox", [account.pk])
    wait_until(
        lambda: silent_imap.still_waiting() == 2,
        message="both reads should be stuck on the silent server:\n" + readers.log()[-3000:],
    )

    newcomer = InvoiceFactory(patient=PatientFactory(practitioner=PractitionerFactory()))
    with transaction.atomic():
        delivery = queue_invoice_email(newcomer)

    wait_until(
        lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SENT,
        message="the invoice should leave while the mailbox reads are stuck",
    )
    # It left while both reads were still waiting on their servers: neither has ended (a
    # read that ends, here by its IMAP timeout, records its failure on the mailbox).
    assert [
        (a.imap_failures, a.imap_error)
        for a in SmtpAccount.objects.filter(pk__in=[a.pk for a in accounts]).order_by("pk")
    ] == [(0, ""), (0, "")]
