"""The sent-email report in Chromium: filter the failed rows, read a detail, correct a refused
address inline and resend, retry, then watch the rows change state by themselves while a real
Celery worker sends them; the bulk retry waits for a selection."""

from __future__ import annotations

import datetime
import re

import pytest
from django.utils import timezone

from emailsettings.models import Delivery, DeliveryEvent, DeliveryStatus
from tests.conftest import login, save_screenshot
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.browser

PASSWORD = "password-di-prova"


def _statuses(page) -> dict[str, str]:
    """Badge text per delivery id, as the table shows it now."""
    rows = page.locator("table.report-table tbody tr[data-delivery]")
    return {
        row.get_attribute("data-delivery"): row.locator(".badge").inner_text() for row in rows.all()
    }


def test_filter_open_detail_act_and_watch_rows_update(
    page, live_server, transactional_db, celery_worker_factory, tmp_path
):
    practitioner = PractitionerFactory(email="maria@example.test")
    now = timezone.now()
    anna_invoice = InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner, first_name="Anna", last_name="Russo", email="anna@x.test"
        ),
        number="1/2026",
    )
    luca_invoice = InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner, first_name="Luca", last_name="Verdi", email="luca@x.test"
        ),
        number="2/2026",
    )
    failed = DeliveryFactory(
        invoice=anna_invoice,
        status=DeliveryStatus.FAILED,
        recipient="anna@x.test",
        last_error_class="recipient_refused",
        last_error_code=550,
        last_error_enhanced="5.1.1",
        last_error_text="5.1.1 <anna@x.test>: Recipient address rejected: User unknown",
        created_at=now - datetime.timedelta(hours=3),
    )
    DeliveryEvent.objects.create(
        delivery=failed,
        kind="attempt",
        status="failed",
        phase="rcpt",
        reply_code=550,
        enhanced_code="5.1.1",
        text="Recipient address rejected: User unknown",
    )
    deferred = DeliveryFactory(
        invoice=luca_invoice,
        status=DeliveryStatus.DEFERRED,
        recipient="luca@x.test",
        attempts=2,
        last_error_class="temporary",
        last_error_code=421,
        last_error_enhanced="4.7.0",
        last_error_text="4.7.0 Try again later",
        next_attempt_at=now + datetime.timedelta(hours=1),
        created_at=now - datetime.timedelta(hours=2),
    )
    DeliveryFactory(
        invoice=luca_invoice,
        status=DeliveryStatus.DELIVERED,
        recipient="luca@x.test",
        created_at=now - datetime.timedelta(days=3),
    )

    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/invii/")
    assert page.get_by_role("heading", level=1).inner_text() == "Elenco invii email"
    assert len(_statuses(page)) == 3
    save_screenshot(page, "report-1-list")

    # Filter by "non riuscita": only the failed row stays, with its error in plain words.
    page.get_by_label("non riuscita", exact=True).check()
    page.get_by_role("button", name="Filtra").click()
    page.wait_for_url(re.compile(r"/email/invii/\?.*status=failed"))
    assert _statuses(page) == {str(failed.pk): "non riuscita"}
    assert page.locator(".last-error").inner_text().strip()
    save_screenshot(page, "report-2-filtered-failed")

    # Open its detail: the timeline and the advice; resend it.
    page.get_by_role(
        "link", name=timezone.localtime(failed.created_at).strftime("%d/%m/%Y %H:%M")
    ).click()
    page.wait_for_url(re.compile(rf"/email/invii/{failed.pk}/\?next=/email/invii/"))
    assert "Recipient address rejected" in page.locator("table.timeline").inner_text()
    assert page.locator(".advice").is_visible()
    save_screenshot(page, "report-3-detail-failed")
    # A permanent refusal: the page offers to correct the address, not a blind retry.
    fix = page.locator("#correggi")
    assert "rifiutato in modo definitivo" in fix.inner_text()
    assert page.get_by_text("Reinvia", exact=True).count() == 0
    field = fix.get_by_label("Indirizzo email corretto del paziente")
    assert field.input_value() == "anna@x.test"
    fix.get_by_role("button", name="Correggi l'indirizzo e reinvia").click()
    page.wait_for_load_state()
    assert "È lo stesso indirizzo che è stato rifiutato" in page.locator(".messages").inner_text()
    assert not Delivery.objects.filter(resend_of=failed).exists()
    page.locator("#correggi").get_by_label("Indirizzo email corretto del paziente").fill(
        "anna.russo@x.test"
    )
    page.get_by_role("button", name="Correggi l'indirizzo e reinvia").click()
    page.wait_for_url(re.compile(r"/email/invii/\d+/(\?next=.*)?$"))
    resent = Delivery.objects.get(resend_of=failed)
    assert resent.recipient == "anna.russo@x.test"
    assert "di nuovo in coda per anna.russo@x.test" in page.locator(".messages").inner_text()
    anna_invoice.patient.refresh_from_db()
    assert anna_invoice.patient.email == "anna.russo@x.test"
    # The new row's page keeps the way back to the filtered list.
    assert f"/email/invii/{resent.pk}/?next=" in page.url and "status" in page.url
    assert "status=failed" in page.get_by_text("Torna all'elenco invii").get_attribute("href")
    assert "in coda" in page.locator("#stato").inner_text()

    # The deferred row: "Riprova ora".
    page.goto(f"{live_server.url}/email/invii/{deferred.pk}/")
    assert "nuovo tentativo programmato" in page.locator("#stato").inner_text().lower()
    page.get_by_text("Riprova ora", exact=True).click()
    page.get_by_role("button", name="Sì, riprova ora").click()
    page.wait_for_url(f"**/email/invii/{deferred.pk}/")
    assert "L'invio è di nuovo in coda." in page.locator(".messages").inner_text()
    save_screenshot(page, "report-4-detail-retried")

    # Back to the list: both rows are in flight and refresh by themselves.
    page.goto(f"{live_server.url}/email/invii/")
    statuses = _statuses(page)
    assert statuses[str(resent.pk)] == "in coda"
    assert statuses[str(deferred.pk)] == "in coda"
    # The refused row is folded under its successor: one row, one count, per invoice email.
    assert str(failed.pk) not in statuses
    assert page.locator(f'tr[data-delivery="{resent.pk}"] [data-resend]').inner_text() == "reinvio"
    save_screenshot(page, "report-5-list-in-flight")

    celery_worker_factory(
        PSICOGEST_VAR_DIR=str(tmp_path / "worker-var"),
        EMAIL_BACKEND="emailsettings.backends.EmlFileBackend",
    )
    # No reload from here on: the page's own polling brings the new states.
    page.locator(f'tr[data-delivery="{resent.pk}"]:not([data-in-flight])').wait_for(timeout=60000)
    page.locator(f'tr[data-delivery="{deferred.pk}"]:not([data-in-flight])').wait_for(timeout=60000)
    statuses = _statuses(page)
    assert statuses[str(resent.pk)] == "inviata"
    assert statuses[str(deferred.pk)] == "inviata"
    row = page.locator(f'tr[data-delivery="{deferred.pk}"]')
    assert "accettata dal servizio di invio" in row.inner_text()
    save_screenshot(page, "report-6-list-updated-by-itself")


def test_another_practitioners_delivery_is_not_found(page, live_server, transactional_db):
    mine = PractitionerFactory(email="maria@example.test")
    theirs = DeliveryFactory(
        invoice=InvoiceFactory(patient=PatientFactory(practitioner=PractitionerFactory()))
    )
    login(page, live_server, mine.email, PASSWORD)
    response = page.goto(f"{live_server.url}/email/invii/{theirs.pk}/")
    assert response is not None and response.status == 404
    page.goto(f"{live_server.url}/email/invii/")
    assert "Non hai ancora inviato fatture per email" in page.content()
    save_screenshot(page, "report-empty-state")


def test_bulk_retry_waits_for_a_selection(page, live_server, transactional_db):
    practitioner = PractitionerFactory(email="maria@example.test")
    invoices = [
        InvoiceFactory(
            patient=PatientFactory(
                practitioner=practitioner,
                email=f"paziente.con.un.indirizzo.lungo.{n}@studioesempio.example.test",
            ),
            number=f"{n}/2026",
        )
        for n in (1, 2)
    ]
    failed = [
        DeliveryFactory(invoice=invoice, status=DeliveryStatus.FAILED, last_error_class="expired")
        for invoice in invoices
    ]
    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/invii/")
    # At 1280 px an address has room: it is not broken mid-word.
    recipient = page.locator(f"#invio-{failed[0].pk} td.recipient")
    lines = recipient.evaluate(
        "el => { const r = document.createRange(); r.selectNodeContents(el);"
        " return new Set(Array.from(r.getClientRects()).map(b => Math.round(b.top))).size; }"
    )
    save_screenshot(page, "report-bulk-layout")
    assert lines == 1
    opener = page.locator("#bulk-retry summary")
    assert opener.get_attribute("aria-disabled") == "true"
    assert page.get_by_text("Seleziona gli invii non riusciti da riprovare.").is_visible()
    opener.click()
    assert not page.get_by_role("button", name="Sì, riprova le selezionate").is_visible()

    page.get_by_label("Seleziona l'invio della fattura 2/2026").check()
    assert opener.get_attribute("aria-disabled") == "false"
    opener.click()
    assert page.locator("#bulk-retry [data-bulk-count]").inner_text() == "1"
    save_screenshot(page, "report-bulk-retry-one-selected")
    page.get_by_role("button", name="Sì, riprova le selezionate").click()
    page.wait_for_load_state()
    assert "Invii rimessi in coda: 1." in page.locator(".messages").inner_text()
    assert list(
        Delivery.objects.filter(resend_of__isnull=False).values_list("resend_of", flat=True)
    ) == [failed[1].pk]
