"""The sent-email report ("Elenco invii email"): filters, search, counters, pagination,
CSV, live refresh, isolation between practitioners, query counts and the actions."""

from __future__ import annotations

import csv
import datetime
import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from emailsettings import report
from emailsettings.failures import ErrorClass
from emailsettings.models import (
    Delivery,
    DeliveryEvent,
    Reputation,
    ReputationState,
    SuppressedAddress,
)
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

LIST = reverse("emailsettings:deliveries")
REFRESH = reverse("emailsettings:deliveries_refresh")
EXPORT = reverse("emailsettings:deliveries_export")


def rows_of(response) -> list[int]:
    """Delivery ids in the table, in page order."""
    return [int(pk) for pk in re.findall(r'data-delivery="(\d+)"', response.content.decode())]


def make(invoice, **fields) -> Delivery:
    return DeliveryFactory(invoice=invoice, **fields)


@pytest.fixture
def dataset(practitioner, other_practitioner):
    """Five deliveries of the practitioner at known ages, one of another practitioner."""
    now = timezone.now()
    patient = PatientFactory(practitioner=practitioner, first_name="Mario", last_name="Verdi")
    invoice = InvoiceFactory(patient=patient, number="1/2026")
    other_invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=other_practitioner), number="99/2026"
    )
    data = {
        "sent_smtp": make(
            invoice,
            channel="smtp",
            status="sent",
            recipient="mario.verdi@example.test",
            patient_name="Mario Verdi",
            invoice_number="1/2026",
            created_at=now,
        ),
        "failed": make(
            invoice,
            status="failed",
            recipient="anna.neri@example.test",
            patient_name="Anna Neri",
            invoice_number="2/2026",
            last_error_class="recipient_refused",
            last_error_code=550,
            last_error_enhanced="5.1.1",
            last_error_text="5.1.1 <anna.neri@example.test>: mailbox unknown",
            body_text="CORPO-SEGRETO del messaggio",
            created_at=now - datetime.timedelta(days=2),
        ),
        "bounced": make(
            invoice,
            status="bounced",
            recipient="piero@example.test",
            patient_name="Piero Rosa",
            invoice_number="5/2026",
            created_at=now - datetime.timedelta(days=3),
        ),
        "deferred": make(
            invoice,
            channel="smtp",
            status="deferred",
            recipient="luca@example.test",
            patient_name="Luca Bianchi",
            invoice_number="3/2026",
            created_at=now - datetime.timedelta(days=10),
        ),
        "delivered": make(
            invoice,
            status="delivered",
            recipient="sara@example.test",
            patient_name="Sara Gialli",
            invoice_number="12/2026",
            created_at=now - datetime.timedelta(days=40),
        ),
        "foreign": make(
            other_invoice,
            status="failed",
            recipient="segreto@example.test",
            patient_name="Paziente Altrui",
            created_at=now,
        ),
    }
    return data


# --- list, filters, search, counters ------------------------------------------------------


def test_list_shows_own_rows_newest_first_in_the_last_30_days_by_default(logged_client, dataset):
    response = logged_client.get(LIST)
    assert response.status_code == 200
    d = dataset
    assert rows_of(response) == [
        d["sent_smtp"].pk,
        d["failed"].pk,
        d["bounced"].pk,
        d["deferred"].pk,
    ]
    content = response.content.decode()
    assert "segreto@example.test" not in content
    assert "Paziente Altrui" not in content


def test_each_row_links_its_detail_and_invoice_and_shows_the_local_time(logged_client, dataset):
    sent = dataset["sent_smtp"]
    html = logged_client.get(LIST).content.decode()
    row = re.search(rf'<tr id="invio-{sent.pk}".*?</tr>', html, re.S)
    assert row is not None
    detail = reverse("emailsettings:delivery", args=[sent.pk])
    assert f'href="{detail}?next=' in row.group(0)
    assert f'href="{reverse("invoice", args=[sent.invoice_id])}"' in row.group(0)
    shown = timezone.localtime(sent.created_at).strftime("%d/%m/%Y %H:%M")
    assert f">{shown}</a>" in row.group(0)
    # The detail link opens that delivery.
    assert logged_client.get(detail).status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("period=all", ["sent_smtp", "failed", "bounced", "deferred", "delivered"]),
        ("period=today", ["sent_smtp"]),
        ("period=7d", ["sent_smtp", "failed", "bounced"]),
        ("status=failed", ["failed"]),
        ("status=failed&status=bounced", ["failed", "bounced"]),
        ("channel=smtp", ["sent_smtp", "deferred"]),
        ("channel=smart_mail&status=failed&status=sent", ["failed"]),
        ("q=ANNA", ["failed"]),
        ("q=luca%40example", ["deferred"]),
        ("q=12%2F2026&period=all", ["delivered"]),
        ("q=12%2F2026", []),
        ("status=nonsense", ["sent_smtp", "failed", "bounced", "deferred"]),
    ],
)
def test_filters_and_search(logged_client, dataset, query, expected):
    response = logged_client.get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert rows_of(response) == [dataset[name].pk for name in expected]


def test_custom_date_range_includes_both_days(logged_client, dataset):
    day = timezone.localtime(dataset["deferred"].created_at).date()
    response = logged_client.get(
        f"{LIST}?period=custom&date_from={day.isoformat()}&date_to={day.isoformat()}"
    )
    assert rows_of(response) == [dataset["deferred"].pk]


def test_custom_range_backwards_is_an_error_not_a_crash(logged_client, dataset):
    response = logged_client.get(f"{LIST}?period=custom&date_from=2026-05-10&date_to=2026-05-01")
    assert response.status_code == 200
    assert "La data finale viene prima di quella iniziale." in response.content.decode()


def test_counters_count_per_status_for_the_period_and_link_to_a_filter(logged_client, dataset):
    response = logged_client.get(f"{LIST}?status=failed")
    content = response.content.decode()
    counters = dict(re.findall(r'data-status="(\w+)".*?class="count">(\d+)<', content, re.S))
    # The counters ignore the status filter (they are what one can click), not the period.
    assert counters == {"sent": "1", "failed": "1", "bounced": "1", "deferred": "1"}
    assert "4 invii nel periodo" in content
    assert re.search(r'href="\?status=bounced" data-status="bounced"', content)


def test_status_counts_service_with_every_status_present(practitioner, dataset):
    counts = report.status_counts(
        practitioner=practitioner, filters=report.ReportFilters(period=report.Period.ALL)
    )
    assert counts["delivered"] == 1 and counts["failed"] == 1 and counts["queued"] == 0
    assert sum(counts.values()) == 5
    assert set(counts) == {value for value, _ in Delivery._meta.get_field("status").choices}


def test_badges_say_what_each_status_means(logged_client, dataset):
    content = logged_client.get(f"{LIST}?period=all").content.decode()
    assert "accettata dal tuo provider" in content  # SMTP sent
    assert "consegnata" in content  # ESP confirmed
    assert "rimbalzata: indirizzo inesistente o casella piena" in content
    assert "nuovo tentativo programmato" in content
    assert "Cosa significano gli stati" in content  # the legend
    assert "accettata dal servizio di invio" in content  # legend, Smart Mail sent


def test_smart_mail_sent_is_accepted_by_the_sending_service(logged_client, practitioner):
    make(InvoiceFactory(patient=PatientFactory(practitioner=practitioner)), status="sent")
    content = logged_client.get(LIST).content.decode()
    assert re.search(r'title="accettata dal servizio di invio">inviata<', content)


def test_last_error_is_shown_in_plain_words(logged_client, practitioner, dataset):
    content = logged_client.get(f"{LIST}?status=failed").content.decode()
    sentence, _detail = report.error_advice(delivery=dataset["failed"], preset_key=None)
    assert sentence
    assert str(sentence) in content.replace("&#x27;", "'").replace("&quot;", '"')


def test_pagination_with_page_size(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    now = timezone.now()
    made = [
        make(invoice, created_at=now - datetime.timedelta(minutes=i), invoice_number=f"{i}/2026")
        for i in range(30)
    ]
    first = logged_client.get(f"{LIST}?per_page=25&status=sent")
    assert rows_of(first) == [d.pk for d in made[:25]]
    assert "Pagina 1 di 2" in first.content.decode()
    second = logged_client.get(f"{LIST}?per_page=25&status=sent&page=2")
    assert rows_of(second) == [d.pk for d in made[25:]]
    # The next-page link keeps the filters.
    assert "per_page=25&amp;status=sent&amp;page=2" in first.content.decode()
    assert len(rows_of(logged_client.get(f"{LIST}?per_page=7"))) == 30  # invalid → 50


def test_empty_state_explains_how_to_send_the_first_invoice(logged_client):
    content = logged_client.get(LIST).content.decode()
    assert "Non hai ancora inviato fatture per email" in content
    assert "Invia per email" in content


def test_filters_matching_nothing_say_so(logged_client, dataset):
    content = logged_client.get(f"{LIST}?q=nessuno-si-chiama-cosi").content.decode()
    assert "Nessun invio corrisponde ai filtri scelti." in content


def test_list_query_count_is_small_and_constant(client, practitioner):
    client.force_login(practitioner)
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    for _ in range(3):
        make(invoice, channel="smtp", status="failed", last_error_code=550, last_error_text="no")
    with CaptureQueriesContext(connection) as few:
        client.get(LIST)
    for i in range(60):
        make(invoice, status=["sent", "failed", "queued"][i % 3], last_error_code=421)
    with CaptureQueriesContext(connection) as many:
        client.get(f"{LIST}?per_page=100")
    assert len(few) == len(many)
    assert len(many) <= 10


def test_list_query_count_asserted(client, practitioner, dataset, django_assert_max_num_queries):
    client.force_login(practitioner)
    with django_assert_max_num_queries(10):
        client.get(f"{LIST}?period=all&q=a")


# --- detail ----------------------------------------------------------------------------


def test_detail_shows_headers_timeline_and_advice(
    logged_client, dataset, django_assert_max_num_queries
):
    delivery = dataset["failed"]
    delivery.from_header = '"Dott.ssa Maria Rossi via PsicoGest" <fatture@psicogest.test>'
    delivery.reply_to = "maria@example.test"
    delivery.save()
    DeliveryEvent.objects.create(delivery=delivery, kind="queued", status="queued")
    DeliveryEvent.objects.create(
        delivery=delivery,
        kind="attempt",
        status="failed",
        phase="rcpt",
        reply_code=550,
        enhanced_code="5.1.1",
        text="mailbox unknown",
    )
    # 11: every page also reads the Smart Mail reputation banner's state (one indexed row).
    with django_assert_max_num_queries(11):
        response = logged_client.get(reverse("emailsettings:delivery", args=[delivery.pk]))
    content = response.content.decode()
    assert "Fattura n. 2/2026" in content  # the subject
    assert "via PsicoGest" in content and "maria@example.test" in content
    assert delivery.message_id.strip("<>") in content
    assert "destinatario (RCPT TO)" in content and "550" in content and "5.1.1" in content
    assert "mailbox unknown" in content
    assert "Reinvia" in content and "Riprova ora" not in content
    assert "CORPO-SEGRETO" not in content


def test_detail_of_held_offers_retry_and_smart_mail(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    delivery = make(invoice, channel="smtp", status="held")
    content = logged_client.get(reverse("emailsettings:delivery", args=[delivery.pk])).content
    assert "Riprova ora" in content.decode() and "Invia con Smart Mail" in content.decode()


def test_detail_of_suppressed_address_offers_reactivation(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    delivery = make(invoice, status="suppressed", recipient="via@example.test")
    SuppressedAddress.objects.create(
        practitioner=practitioner, address="via@example.test", reason="bounced"
    )
    content = logged_client.get(reverse("emailsettings:delivery", args=[delivery.pk])).content
    assert "Riattiva indirizzo" in content.decode()
    assert "è sospeso" in content.decode()


# --- refresh endpoint ------------------------------------------------------------------


def _known(response) -> list[str]:
    html = response.content.decode()
    return [
        f"{pk}:{version}"
        for pk, version in re.findall(r'data-delivery="(\d+)" data-version="([^"]+)"', html)
    ]


def test_refresh_returns_only_changed_rows(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    queued = make(invoice, status="queued", attempts=0)
    sending = make(invoice, status="sending")
    page = logged_client.get(LIST)
    assert "data-in-flight" in page.content.decode()
    known = _known(page)
    assert logged_client.get(REFRESH, {"r": known}).json()["rows"] == []

    # The worker's claim is a conditional UPDATE: it does not touch updated_at.
    Delivery.objects.filter(pk=queued.pk).update(status="sent", attempts=1)
    data = logged_client.get(REFRESH, {"r": known}).json()
    assert [row["id"] for row in data["rows"]] == [queued.pk]
    row = data["rows"][0]
    assert row["status"] == "sent" and row["in_flight"] is False
    assert "accettata dal servizio di invio" in row["html"]
    assert f'data-delivery="{queued.pk}"' in row["html"]
    assert sending.pk not in [r["id"] for r in data["rows"]]
    # The counters of the page's filters come along, so they move with the rows.
    assert 'data-status="sent"' in data["counters_html"]
    assert "2 invii nel periodo" in data["counters_html"]


def test_refresh_query_count_is_constant(client, practitioner):
    client.force_login(practitioner)
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    made = [make(invoice, status="queued", attempts=0) for _ in range(30)]
    stale = [f"{d.pk}:stale" for d in made]
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(REFRESH, {"r": stale[:2], "next": LIST}).json()["rows"]) == 2
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(REFRESH, {"r": stale, "next": LIST}).json()["rows"]) == 30
    assert len(few) == len(many) <= 6


def test_refresh_ignores_other_practitioners_ids(logged_client, dataset):
    foreign = dataset["foreign"]
    data = logged_client.get(REFRESH, {"r": [f"{foreign.pk}:stale", "junk", "5:"]}).json()
    assert data["rows"] == []


# --- CSV ---------------------------------------------------------------------------------


def _csv(response) -> tuple[bytes, list[list[str]]]:
    raw = b"".join(response.streaming_content)
    text = raw.decode("utf-8")
    return raw, list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))


def test_csv_export_of_the_filtered_rows(logged_client, dataset):
    response = logged_client.get(EXPORT, {"period": "all", "channel": "smart_mail"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="invii-email-')
    raw, rows = _csv(response)
    assert raw.startswith(b"\xef\xbb\xbf")
    assert rows[0][:8] == [
        "Data e ora",
        "Paziente",
        "Destinatario",
        "Fattura",
        "Tipo",
        "Canale",
        "Protezione",
        "Stato",
    ]
    assert [r[2] for r in rows[1:]] == [
        "anna.neri@example.test",
        "piero@example.test",
        "sara@example.test",
    ]
    failed = rows[1]
    local = timezone.localtime(dataset["failed"].created_at)
    assert failed[0] == local.strftime("%d/%m/%Y %H:%M:%S")
    assert failed[1] == "Anna Neri" and failed[3] == "2/2026" and failed[4] == "Fattura"
    assert failed[5] == "Smart Mail" and failed[6] == "PDF allegato"
    assert failed[7] == "non riuscita"
    assert failed[11] == "550 5.1.1" and failed[12]
    assert b"CORPO-SEGRETO" not in raw
    assert b"segreto@example.test" not in raw


def test_csv_neutralises_formulas(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    make(invoice, patient_name="=HYPERLINK(1)")
    _raw, rows = _csv(logged_client.get(EXPORT))
    assert rows[1][1] == "'=HYPERLINK(1)"


def test_csv_streams_in_one_query_for_the_rows(client, practitioner):
    client.force_login(practitioner)
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    for _ in range(25):
        make(invoice, status="failed", last_error_code=550)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(EXPORT)
        _raw, rows = _csv(response)
    assert len(rows) == 26
    assert len(queries) <= 5


# --- isolation, methods, login ------------------------------------------------------------

ACTION_URLS = [
    "emailsettings:delivery_resend",
    "emailsettings:delivery_retry",
    "emailsettings:delivery_smart_mail",
    "emailsettings:delivery_reactivate",
]


@pytest.mark.parametrize("name", ["emailsettings:delivery", *ACTION_URLS])
def test_other_practitioners_delivery_is_404(logged_client, dataset, name):
    url = reverse(name, args=[dataset["foreign"].pk])
    method = logged_client.get if name == "emailsettings:delivery" else logged_client.post
    assert method(url).status_code == 404
    assert Delivery.objects.filter(practitioner=dataset["foreign"].practitioner).count() == 1


def test_bulk_retry_with_another_practitioners_id_is_404(logged_client, dataset):
    response = logged_client.post(
        reverse("emailsettings:deliveries_bulk_retry"),
        {"ids": [dataset["failed"].pk, dataset["foreign"].pk]},
    )
    assert response.status_code == 404
    assert Delivery.objects.count() == 6


@pytest.mark.parametrize("name", ACTION_URLS)
def test_actions_refuse_get(logged_client, dataset, name):
    assert logged_client.get(reverse(name, args=[dataset["failed"].pk])).status_code == 405


def test_actions_need_csrf(client, practitioner, dataset):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(practitioner)
    url = reverse("emailsettings:delivery_resend", args=[dataset["failed"].pk])
    assert csrf_client.post(url).status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        LIST,
        REFRESH,
        EXPORT,
        reverse("emailsettings:delivery", args=[1]),
        reverse("emailsettings:deliveries_bulk_retry"),
    ],
)
def test_login_required(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and "/accesso/" in response["Location"]


# --- actions (services from emailsettings.outbox) ------------------------------------------


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def own_invoice(practitioner):
    patient = PatientFactory(practitioner=practitioner, email="giulia@example.test")
    return InvoiceFactory(patient=patient, number="7/2026")


def test_retry_now_puts_a_deferred_row_back_in_the_queue(logged_client, own_invoice):
    delivery = make(own_invoice, channel="smart_mail", status="deferred", attempts=2)
    url = reverse("emailsettings:delivery_retry", args=[delivery.pk])
    response = logged_client.post(url, follow=True)
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert response.redirect_chain[-1][0] == reverse("emailsettings:delivery", args=[delivery.pk])
    assert "L'invio è di nuovo in coda." in _messages(response)
    assert "in coda" in response.content.decode()


def test_retry_now_is_refused_for_a_sent_row(logged_client, own_invoice):
    delivery = make(own_invoice, status="sent")
    response = logged_client.post(
        reverse("emailsettings:delivery_retry", args=[delivery.pk]), follow=True
    )
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert "Questa azione non è possibile per un invio nello stato «inviata»." in _messages(
        response
    )


def test_send_with_smart_mail_switches_a_held_smtp_row(logged_client, own_invoice):
    delivery = make(own_invoice, channel="smtp", status="held")
    response = logged_client.post(
        reverse("emailsettings:delivery_smart_mail", args=[delivery.pk]), follow=True
    )
    delivery.refresh_from_db()
    assert delivery.status == "queued" and delivery.channel == "smart_mail"
    assert delivery.fallback_to_smart_mail
    assert "inviata con Smart Mail per tua scelta" in response.content.decode()


def test_resend_creates_a_new_delivery_linked_to_the_old_one(logged_client, own_invoice):
    old = make(own_invoice, status="failed", recipient="giulia@example.test")
    response = logged_client.post(
        reverse("emailsettings:delivery_resend", args=[old.pk]), follow=True
    )
    new = Delivery.objects.exclude(pk=old.pk).get(invoice=own_invoice)
    assert new.resend_of_id == old.pk and new.status == "queued"
    assert response.redirect_chain[-1][0] == reverse("emailsettings:delivery", args=[new.pk])
    assert "Reinvio di" in response.content.decode()
    old.refresh_from_db()
    assert old.status == "failed"


def test_reactivate_address_removes_the_suppression(logged_client, practitioner, own_invoice):
    delivery = make(own_invoice, status="suppressed", recipient="giulia@example.test")
    SuppressedAddress.objects.create(
        practitioner=practitioner, address="giulia@example.test", reason="bounced"
    )
    response = logged_client.post(
        reverse("emailsettings:delivery_reactivate", args=[delivery.pk]), follow=True
    )
    assert not SuppressedAddress.objects.filter(practitioner=practitioner).exists()
    assert "di nuovo attivo" in " ".join(_messages(response))


def test_bulk_retry_resends_the_selected_failed_rows(logged_client, practitioner, own_invoice):
    second = InvoiceFactory(patient=PatientFactory(practitioner=practitioner), number="8/2026")
    failed = [make(own_invoice, status="failed"), make(second, status="failed")]
    sent = make(own_invoice, status="sent")
    next_url = f"{LIST}?status=failed"
    response = logged_client.post(
        reverse("emailsettings:deliveries_bulk_retry"),
        {"ids": [d.pk for d in failed] + [sent.pk], "next": next_url},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == next_url
    assert sorted(
        Delivery.objects.filter(resend_of__isnull=False).values_list("resend_of", flat=True)
    ) == sorted(d.pk for d in failed)
    assert "Invii rimessi in coda: 2." in _messages(response)
    assert "Invii non riprovati: 1." in _messages(response)


def test_bulk_retry_ignores_an_outside_next_url(logged_client, own_invoice):
    failed = make(own_invoice, status="failed")
    response = logged_client.post(
        reverse("emailsettings:deliveries_bulk_retry"),
        {"ids": [failed.pk], "next": "https://evil.example/"},
    )
    assert response["Location"] == LIST


def test_the_period_select_shows_the_default_period(logged_client, dataset):
    content = logged_client.get(LIST).content.decode()
    assert re.search(r'<option value="30d" selected>', content)
    custom = logged_client.get(f"{LIST}?date_from=2026-01-01").content.decode()
    assert re.search(r'<option value="custom" selected>', custom)


def test_retry_of_a_held_row_while_the_mailbox_is_broken_says_what_to_do(
    logged_client, practitioner, own_invoice
):
    from emailsettings.models import MailboxStatus, SmtpAccount

    SmtpAccount.objects.create(
        practitioner=practitioner,
        email="maria@example.test",
        host="smtp.example.test",
        port=587,
        security="starttls",
        username="maria@example.test",
        status=MailboxStatus.BROKEN,
    )
    delivery = make(own_invoice, channel="smtp", status="held")
    response = logged_client.post(
        reverse("emailsettings:delivery_retry", args=[delivery.pk]), follow=True
    )
    delivery.refresh_from_db()
    assert delivery.status == "held"
    assert any("casella SMTP risulta ancora da correggere" in m for m in _messages(response))


def test_retry_is_not_offered_for_a_row_held_by_the_smart_mail_suspension(
    logged_client, practitioner, own_invoice
):
    """The worker would hold it again at claim time: the page leads to the reputation page
    instead, and a posted retry is refused with what to do."""
    reputation = Reputation.objects.create(
        practitioner=practitioner, state=ReputationState.SUSPENDED
    )
    delivery = make(
        own_invoice,
        channel="smart_mail",
        status="held",
        last_error_class=ErrorClass.REPUTATION_HOLD,
    )
    detail = reverse("emailsettings:delivery", args=[delivery.pk])
    retry = reverse("emailsettings:delivery_retry", args=[delivery.pk])

    page = logged_client.get(detail).content.decode()
    assert retry not in page
    assert "Riprova ora" not in page
    assert f'href="{reverse("emailsettings:reputation")}" data-reputation-held' in page

    response = logged_client.post(retry, follow=True)
    delivery.refresh_from_db()
    assert delivery.status == "held"
    assert delivery.last_error_class == ErrorClass.REPUTATION_HOLD
    assert any(
        "Smart Mail è sospeso per il tuo account: riprovare non serve" in m
        for m in _messages(response)
    )
    assert not any("casella SMTP" in m for m in _messages(response))

    # Once the suspension no longer stands, a row still held can be retried.
    reputation.state = ReputationState.REGULAR
    reputation.save()
    page = logged_client.get(detail).content.decode()
    assert retry in page and "data-reputation-held" not in page
    logged_client.post(retry)
    delivery.refresh_from_db()
    assert delivery.status == "queued"


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "shown"),
    [
        (
            550,
            "5.1.1",
            "550 5.1.1 <a@rifiuta.test>: User unknown",
            "550 5.1.1 <a@rifiuta.test>: User unknown",
        ),
        (550, "5.1.1", "User unknown", "550 5.1.1 User unknown"),
        (None, "", "Errore dell'ESP", "Errore dell'ESP"),
    ],
)
def test_the_server_reply_shows_its_codes_once(code, enhanced, text, shown):
    from emailsettings.models import Delivery

    delivery = Delivery(last_error_code=code, last_error_enhanced=enhanced, last_error_text=text)
    assert delivery.last_reply == shown


# --- retries that fix before they repeat ---------------------------------------------------


def refused(invoice, **fields) -> Delivery:
    values = dict(
        status="failed",
        channel="smtp",
        recipient="giulia@example.test",
        last_error_class="recipient_refused",
        last_error_code=550,
        last_error_enhanced="5.1.1",
        last_error_text="User unknown",
    )
    values.update(fields)
    return make(invoice, **values)


def test_a_refused_address_is_corrected_inline_then_resent(logged_client, own_invoice):
    old = refused(own_invoice)
    detail = logged_client.get(reverse("emailsettings:delivery", args=[old.pk])).content.decode()
    assert 'id="correggi"' in detail and "Correggi l'indirizzo e reinvia" in detail
    assert "Reinvia allo stesso indirizzo" in detail
    url = reverse("emailsettings:delivery_fix_address", args=[old.pk])

    # The same address again is refused, and nothing is sent.
    response = logged_client.post(url, {"indirizzo": "Giulia@example.test "}, follow=True)
    assert "È lo stesso indirizzo che è stato rifiutato" in " ".join(_messages(response))
    assert Delivery.objects.count() == 1

    response = logged_client.post(url, {"indirizzo": "giulia.rossi@example.test"}, follow=True)
    new = Delivery.objects.exclude(pk=old.pk).get()
    assert (new.recipient, new.status, new.resend_of_id) == (
        "giulia.rossi@example.test",
        "queued",
        old.pk,
    )
    own_invoice.patient.refresh_from_db()
    assert own_invoice.patient.email == "giulia.rossi@example.test"
    assert response.redirect_chain[-1][0] == reverse("emailsettings:delivery", args=[new.pk])
    assert "di nuovo in coda per giulia.rossi@example.test" in " ".join(_messages(response))


def test_another_recipients_refused_address_is_corrected_in_the_card_list(
    logged_client, own_invoice
):
    patient = own_invoice.patient
    patient.extra_emails = ["mamma@example.test", "papa@sbagliato.test"]
    patient.save()
    old = refused(own_invoice, role="extra", recipient="papa@sbagliato.test")
    logged_client.post(
        reverse("emailsettings:delivery_fix_address", args=[old.pk]),
        {"indirizzo": "papa@example.test"},
    )
    patient.refresh_from_db()
    assert patient.extra_emails == ["mamma@example.test", "papa@example.test"]
    assert patient.email == "giulia@example.test"
    new = Delivery.objects.exclude(pk=old.pk).get()
    assert (new.recipient, new.role) == ("papa@example.test", "extra")


def test_bulk_retry_does_not_repeat_a_permanent_refusal_to_the_same_address(
    logged_client, practitioner, own_invoice
):
    second = InvoiceFactory(patient=PatientFactory(practitioner=practitioner), number="8/2026")
    same = refused(own_invoice)
    temporary = make(second, status="failed", last_error_class="expired")
    content = logged_client.get(LIST).content.decode()
    # The refused row offers the fix, not a checkbox for a blind retry.
    assert f'value="{same.pk}" form="bulk-retry"' not in content
    assert f'value="{temporary.pk}" form="bulk-retry"' in content
    assert "#correggi" in content and "Correggi l&#x27;indirizzo</a>" in content

    response = logged_client.post(
        reverse("emailsettings:deliveries_bulk_retry"),
        {"ids": [same.pk, temporary.pk], "next": LIST},
        follow=True,
    )
    assert list(
        Delivery.objects.filter(resend_of__isnull=False).values_list("resend_of", flat=True)
    ) == [temporary.pk]
    texts = " ".join(_messages(response))
    assert "Invii rimessi in coda: 1." in texts
    assert "1 invio non riprovato: il suo indirizzo è stato rifiutato e non è cambiato" in texts

    # Once the card has the corrected address, the bulk retry sends it there.
    own_invoice.patient.email = "giulia.rossi@example.test"
    own_invoice.patient.save()
    logged_client.post(reverse("emailsettings:deliveries_bulk_retry"), {"ids": [same.pk]})
    assert Delivery.objects.get(resend_of=same).recipient == "giulia.rossi@example.test"


@pytest.mark.parametrize("period", ["30d", "all"])
def test_a_superseded_failure_is_folded_under_its_successor(logged_client, own_invoice, period):
    old = refused(own_invoice)
    new = make(own_invoice, status="sent", resend_of=old, recipient="giulia.rossi@example.test")
    response = logged_client.get(f"{LIST}?period={period}")
    assert rows_of(response) == [new.pk]
    counters = {c["status"]: c["count"] for c in response.context["counters"]}
    assert counters["failed"] == 0 and counters["sent"] == 1
    assert response.context["period_total"] == 1
    assert "data-resend" in response.content.decode()
    # Still on the successor's detail page, and its own.
    detail = logged_client.get(reverse("emailsettings:delivery", args=[new.pk]))
    assert reverse("emailsettings:delivery", args=[old.pk]) in detail.content.decode()


def test_reminders_show_their_kind_as_a_column_a_filter_and_in_the_csv(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner), number="9/2026")
    DeliveryFactory(invoice=invoice, recipient="fattura@example.test")
    DeliveryFactory(invoice=invoice, recipient="primo@example.test", reminder_level=1)
    DeliveryFactory(invoice=invoice, recipient="secondo@example.test", reminder_level=2)
    content = logged_client.get(LIST, {"period": "all"}).content.decode()
    assert "Sollecito 1" in content and "Sollecito 2" in content and 'data-kind="0"' in content
    only_two = logged_client.get(LIST, {"period": "all", "kind": "2"}).content.decode()
    assert "secondo@example.test" in only_two and "primo@example.test" not in only_two
    reminders = logged_client.get(LIST, {"period": "all", "kind": "reminder"}).content.decode()
    assert "primo@example.test" in reminders and "fattura@example.test" not in reminders
    invoices = logged_client.get(LIST, {"period": "all", "kind": "invoice"}).content.decode()
    assert "fattura@example.test" in invoices and "primo@example.test" not in invoices
    _raw, rows = _csv(logged_client.get(EXPORT, {"period": "all", "kind": "reminder"}))
    assert sorted((r[2], r[4]) for r in rows[1:]) == [
        ("primo@example.test", "Sollecito 1"),
        ("secondo@example.test", "Sollecito 2"),
    ]
