"""A full disk under the Smart Mail file backend (the embedded default's stand-in for the ESP):
a small tmpfs fills up in the middle of a batch.

What fits is written whole; what does not leaves no file at all (no empty or truncated
``.eml``), waits to be retried, and says in Italian that the service's disk is full — not
that a server could not be reached.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

from emailsettings.failures import ErrorClass
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 24 KiB tmpfs: room for a few messages, not for ten."""
    mount_point = tmp_path / "smartmail"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount_point)], check=True
    )
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_leaves_no_partial_file_and_says_so(
    small_disk, settings, practitioner, logged_client
):
    settings.EMAIL_BACKEND = "emailsettings.backends.EmlFileBackend"
    settings.EMAIL_FILE_PATH = str(small_disk)
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMART_MAIL}
    )
    invoices = [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"p{n}@example.test")
        )
        for n in range(10)
    ]
    deliveries = queue_invoice_emails(invoices)

    send_batch(delivery_ids=[d.pk for d in deliveries])

    rows = {
        row.message_id.strip("<>"): row
        for row in Delivery.objects.filter(pk__in=[d.pk for d in deliveries])
    }
    sent = {mid for mid, row in rows.items() if row.status == DeliveryStatus.SENT}
    waiting = [row for row in rows.values() if row.status == DeliveryStatus.DEFERRED]
    assert sent and waiting, "the disk should fill up in the middle of the batch"
    assert len(sent) + len(waiting) == len(rows)

    # Every file on the disk is a whole message of a sent row; nothing else is left there.
    files = sorted(small_disk.iterdir())
    assert len(files) == len(sent), [f.name for f in files]
    for path in files:
        assert path.suffix == ".eml" and path.stat().st_size > 0
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        row = rows[message["Message-ID"].strip("<>")]
        assert row.message_id.strip("<>") in sent
        [pdf] = list(message.iter_attachments())
        assert pdf.get_content() == row.invoice.pdf.open("rb").read()

    # The rows that did not fit wait for a retry, and say why in plain Italian.
    for row in waiting:
        assert row.last_error_class == ErrorClass.LOCAL_STORAGE
        assert row.next_attempt_at is not None
    page = logged_client.get(reverse("emailsettings:delivery", args=[waiting[0].pk]))
    content = page.content.decode()
    assert "Disco del servizio pieno" in content
    assert "non ha più spazio" in content
    assert "Server non raggiungibile" not in content
