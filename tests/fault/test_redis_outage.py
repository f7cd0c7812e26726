"""Redis down while a practitioner uses the product, then started again empty.

Redis is the broker, the dispatcher's slots and backlogs, and the cache (rate limits, the
live progress of a mailbox check). While it is down every page answers — a page or a clear
Italian message, never a server error (the test client raises on one) — the progress page
says that sending is paused, and nothing queued is lost: once Redis is back, empty, every
invoice is sent exactly once. The test runs its own redis-server (``own_redis``), so the
shared one is never stopped.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.urls import reverse

from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.sweeper import sweep
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory
from tests.fault.test_broker_outage import own_redis  # noqa: F401
from tests.fault.test_delivery_faults import FAST

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_redis_down_no_error_page_sending_paused_then_started_empty_each_sent_once(
    own_redis,  # noqa: F811
    settings,
    local_ca,
    smtp_server,
    smtp_account_factory,
    celery_worker_factory,
    practitioner,
    logged_client,
):
    for name, value in FAST.items():
        setattr(settings, name, float(value))
    settings.CELERY_BROKER_URL = own_redis.url
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": own_redis.url,
        }
    }
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    smtp_account_factory(smtp_server)
    invoices = [
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=f"p{n}@ex.test"))
        for n in range(6)
    ]
    celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, REDIS_URL=own_redis.url, **FAST
    )

    own_redis.stop()

    # "Invia" for three invoices at once, then one more: each request answers at once.
    started = time.monotonic()
    sent_form = logged_client.post(
        reverse("emailsettings:send_confirm"), {"fattura": [str(i.pk) for i in invoices[:3]]}
    )
    assert sent_form.status_code == 302
    progress_url = sent_form["Location"]
    single = logged_client.post(
        reverse("emailsettings:send_confirm"), {"fattura": [str(invoices[3].pk)]}
    )
    assert single.status_code == 302
    assert time.monotonic() - started < 5, "queueing waited on the dead broker"
    queued = Delivery.objects.filter(invoice__in=invoices[:4])
    assert Counter(queued.values_list("status", flat=True)) == {DeliveryStatus.QUEUED: 4}

    # The progress page says that sending is paused, and why, in Italian.
    page = logged_client.get(progress_url)
    assert page.status_code == 200
    banner = page.content.decode().split("data-paused", 1)[1].split("</p>", 1)[0]
    assert "hidden" not in banner.split(">", 1)[0]
    assert "Invio in pausa: il servizio di coda non risponde" in banner
    data = logged_client.get(progress_url.replace("/avanzamento/", "/avanzamento/stato/"))
    assert data.status_code == 200 and data.json()["paused"] is True

    # Every page a practitioner opens meanwhile answers.
    delivery = queued.first()
    for url in (
        reverse("invoices"),
        reverse("invoice", args=[invoices[0].pk]),
        reverse("patient_edit", args=[invoices[0].patient.pk]),
        reverse("emailsettings:settings"),
        reverse("emailsettings:deliveries"),
        reverse("emailsettings:delivery", args=[delivery.pk]),
        reverse("emailsettings:deliveries_export"),
        reverse("emailsettings:mailbox_status"),
        reverse("emailsettings:send_confirm") + f"?fattura={invoices[4].pk}",
    ):
        assert logged_client.get(url).status_code == 200, url
    # "Verifica connessione" and its status poll: the check cannot start, and says so.
    check = logged_client.post(
        reverse("emailsettings:mailbox_verify"), HTTP_ACCEPT="application/json"
    )
    assert check.status_code == 202
    assert check.json()["state"] == "unavailable"
    # The cover-mail preview (rate-limited through the cache) still renders.
    preview = logged_client.post(
        reverse("emailsettings:covermail_preview"),
        {
            "invoice": str(invoices[0].pk),
            "subject_template": "Fattura ${numero_fattura}",
            "body_template": "${saluto},\r\nciao",
        },
    )
    assert preview.status_code == 200
    assert preview.json()["subject"] == "Fattura " + invoices[0].number

    # Redis comes back empty: no backlog, no slots, no queued task. The sweeper (beat)
    # publishes what waited and every invoice leaves once.
    own_redis.start()
    ids = list(queued.values_list("pk", flat=True))

    def all_sent() -> bool:
        sweep()
        return set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
            DeliveryStatus.SENT
        }

    wait_until(all_sent, timeout=60, interval=0.5)
    assert Counter(smtp_server.message_ids()) == {d.message_id: 1 for d in queued}
    assert (
        logged_client.get(progress_url.replace("/avanzamento/", "/avanzamento/stato/")).json()[
            "paused"
        ]
        is False
    )
