"""The sending options in process: the patient's chosen address, other recipients and the
practitioner's copy (each its own row and Message-ID), scheduled sending and the sending
window, cancelling, and timeline texts shown in the reader's language.

The same options through a real worker and SMTP server are in
tests/fault/test_sending_options_worker.py.
"""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from django.utils import timezone, translation

from emailsettings.exceptions import ActionNotAllowed, InvalidRecipient
from emailsettings.failures import Accepted
from emailsettings.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EmailSettings,
    EventKind,
    RecipientRole,
)
from emailsettings.outbox import lifecycle
from emailsettings.outbox.actions import (
    cancel_scheduled,
    cancel_scheduled_invoice,
    hold_without_mailbox,
    resend,
    resume_held,
    send_invoice_now,
    send_now,
)
from emailsettings.outbox.queueing import (
    queue_invoice_batch,
    queue_invoice_email,
    queue_invoice_emails,
)
from emailsettings.outbox.schedule import SendingWindow, release_time
from emailsettings.outbox.sweeper import sweep
from psicogest.models import InvoiceAddress
from tests.factories import InvoiceFactory, PatientFactory

ROME = zoneinfo.ZoneInfo("Europe/Rome")
WEEKDAYS_8_20 = SendingWindow(
    days=frozenset(range(5)), start=datetime.time(8, 0), end=datetime.time(20, 0)
)


def rome(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=ROME)


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner, email="giulia@example.test", pec="giulia@pec.example.test"
    )
    return InvoiceFactory(patient=patient, number="7/2026")


# --- the sending window ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # Tuesday 1 December 2026, inside: at once.
        (rome(2026, 12, 1, 10, 0), rome(2026, 12, 1, 10, 0)),
        # Before the opening: the same morning.
        (rome(2026, 12, 1, 6, 30), rome(2026, 12, 1, 8, 0)),
        # At the closing hour: the next morning (the end is excluded).
        (rome(2026, 12, 1, 20, 0), rome(2026, 12, 2, 8, 0)),
        # Friday evening: Monday morning.
        (rome(2026, 12, 4, 21, 0), rome(2026, 12, 7, 8, 0)),
        # Sunday: Monday morning.
        (rome(2026, 12, 6, 12, 0), rome(2026, 12, 7, 8, 0)),
    ],
)
def test_the_window_releases_at_its_next_opening(moment, expected):
    assert WEEKDAYS_8_20.next_opening(moment) == expected


def test_release_time_is_none_for_now_and_the_chosen_time_otherwise():
    now = rome(2026, 12, 1, 10, 0)
    assert release_time(window=None, send_at=None, now=now) is None
    assert release_time(window=None, send_at=now - datetime.timedelta(hours=1), now=now) is None
    later = now + datetime.timedelta(hours=3)
    assert release_time(window=None, send_at=later, now=now) == later
    # A chosen time outside the window waits for the next opening.
    evening = rome(2026, 12, 1, 22, 0)
    assert release_time(window=WEEKDAYS_8_20, send_at=evening, now=now) == rome(2026, 12, 2, 8)
    # Sending now outside the window: the next opening.
    night = rome(2026, 12, 1, 23, 0)
    assert release_time(window=WEEKDAYS_8_20, send_at=None, now=night) == rome(2026, 12, 2, 8)


def test_the_window_describes_itself_in_italian():
    with translation.override("it"):
        assert WEEKDAYS_8_20.describe() == "Lun, Mar, Mer, Gio, Ven dalle 08:00 alle 20:00"


# --- recipients ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_invoices_go_to_the_pec_when_the_card_says_so(invoice):
    invoice.patient.invoice_address = InvoiceAddress.PEC
    invoice.patient.save()

    delivery = queue_invoice_email(invoice)

    assert delivery.recipient == "giulia@pec.example.test"
    assert delivery.role == RecipientRole.PATIENT


@pytest.mark.django_db
def test_pec_chosen_without_a_pec_address_is_refused_and_creates_nothing(invoice):
    invoice.patient.invoice_address = InvoiceAddress.PEC
    invoice.patient.pec = ""
    invoice.patient.save()

    with pytest.raises(InvalidRecipient, match="PEC"):
        queue_invoice_email(invoice)
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_each_other_recipient_and_the_copy_get_their_own_row_and_message_id(invoice, practitioner):
    invoice.patient.extra_emails = [
        "mamma@example.test",
        "GIULIA@example.test",
        "papa@example.test",
    ]
    invoice.patient.save()
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)

    rows = queue_invoice_batch([invoice])

    assert [(row.recipient, row.role) for row in rows] == [
        ("giulia@example.test", RecipientRole.PATIENT),
        ("mamma@example.test", RecipientRole.EXTRA),
        ("papa@example.test", RecipientRole.EXTRA),
        (practitioner.email, RecipientRole.COPY),
    ]
    assert len({row.message_id for row in rows}) == 4
    assert {row.status for row in rows} == {DeliveryStatus.QUEUED}
    # The contract still returns the patient's delivery, one per invoice.
    assert queue_invoice_emails([invoice]) == [rows[0]]
    # A double click sends once, to everybody.
    assert queue_invoice_batch([invoice]) == rows
    assert Delivery.objects.count() == 4


@pytest.mark.django_db
def test_an_invalid_other_recipient_refuses_the_invoice(invoice):
    invoice.patient.extra_emails = ["mamma@example.test", "non un indirizzo"]
    invoice.patient.save()

    with pytest.raises(InvalidRecipient, match="non un indirizzo"):
        queue_invoice_batch([invoice])
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_the_copy_does_not_count_as_the_invoice_emailed(invoice, practitioner):
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)
    rows = queue_invoice_batch([invoice])
    copy = next(row for row in rows if row.role == RecipientRole.COPY)

    claimed = lifecycle.claim(copy.pk)
    assert lifecycle.record(claimed, Accepted(reply="250 OK", code=250)) == DeliveryStatus.SENT

    invoice.refresh_from_db()
    assert invoice.last_emailed_at is None


@pytest.mark.django_db
def test_resending_another_recipients_row_goes_to_the_same_address(invoice):
    invoice.patient.extra_emails = ["mamma@example.test"]
    invoice.patient.save()
    extra = queue_invoice_batch([invoice])[1]
    Delivery.objects.filter(pk=extra.pk).update(status=DeliveryStatus.FAILED)
    extra.refresh_from_db()

    again = resend(delivery=extra)

    assert (again.recipient, again.role, again.resend_of_id) == (
        "mamma@example.test",
        RecipientRole.EXTRA,
        extra.pk,
    )
    assert again.message_id != extra.message_id


# --- scheduling ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_scheduled_invoice_waits_and_is_released_by_the_sweeper_at_its_time(invoice):
    send_at = timezone.now() + datetime.timedelta(hours=2)

    delivery = queue_invoice_email(invoice, send_at=send_at)

    assert delivery.status == DeliveryStatus.SCHEDULED
    assert delivery.scheduled_for == send_at
    assert sweep().released == 0
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SCHEDULED
    # A worker handed the id anyway does not take it early.
    assert lifecycle.claim(delivery.pk) is None

    Delivery.objects.filter(pk=delivery.pk).update(
        scheduled_for=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert sweep().released == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert list(delivery.events.values_list("status", flat=True)) == [
        DeliveryStatus.SCHEDULED,
        DeliveryStatus.QUEUED,
    ]


@pytest.mark.django_db
def test_outside_the_window_invoices_are_scheduled_for_its_opening(invoice, practitioner):
    # Every day but today: the window is closed now whatever the hour.
    today = timezone.localtime().weekday()
    days = "".join(str(day) for day in range(7) if day != today)
    EmailSettings.objects.create(
        practitioner=practitioner,
        window_days=days,
        window_start=datetime.time(8, 0),
        window_end=datetime.time(20, 0),
    )
    window = SendingWindow(
        days=frozenset(int(day) for day in days),
        start=datetime.time(8, 0),
        end=datetime.time(20, 0),
    )

    delivery = queue_invoice_email(invoice)

    assert delivery.status == DeliveryStatus.SCHEDULED
    assert delivery.scheduled_for == window.next_opening(delivery.created_at)
    local = timezone.localtime(delivery.scheduled_for)
    assert (local.weekday() != today, local.hour, local.minute) == (True, 8, 0)


@pytest.mark.django_db
def test_a_scheduled_invoice_can_be_cancelled_or_sent_now_until_it_leaves(invoice, practitioner):
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)
    later = timezone.now() + datetime.timedelta(days=1)
    patient_row, copy_row = queue_invoice_batch([invoice], send_at=later)

    cancelled = cancel_scheduled(delivery=patient_row)
    assert cancelled.status == DeliveryStatus.CANCELLED
    assert cancelled.scheduled_for is None
    with pytest.raises(ActionNotAllowed):
        cancel_scheduled(delivery=cancelled)

    sent_now = send_now(delivery=copy_row)
    assert sent_now.status == DeliveryStatus.QUEUED
    with pytest.raises(ActionNotAllowed):
        cancel_scheduled(delivery=sent_now)
    # A cancelled invoice can be sent again, as a new delivery.
    assert resend(delivery=cancelled).status == DeliveryStatus.QUEUED


@pytest.mark.django_db
def test_the_invoice_is_the_unit_of_cancel_and_send_now(invoice, practitioner):
    """One «Annulla» or «Invia ora» covers the patient, the other recipients and the copy;
    another invoice's scheduled mails are not touched."""
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)
    invoice.patient.extra_emails = ["mamma@example.test", "papa@example.test"]
    invoice.patient.save()
    other = InvoiceFactory(patient=invoice.patient, number="8/2026")
    later = timezone.now() + datetime.timedelta(days=1)
    rows = queue_invoice_batch([invoice, other], send_at=later)
    mine = [row for row in rows if row.invoice_id == invoice.pk]
    assert len(mine) == 4

    # From any of its rows (here the copy), the whole invoice.
    assert sorted(cancel_scheduled_invoice(delivery=mine[-1])) == sorted(r.pk for r in mine)
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert {statuses[row.pk] for row in mine} == {DeliveryStatus.CANCELLED}
    theirs = [row for row in rows if row.invoice_id == other.pk]
    assert {statuses[row.pk] for row in theirs} == {DeliveryStatus.SCHEDULED}
    with pytest.raises(ActionNotAllowed):
        cancel_scheduled_invoice(delivery=mine[0])

    assert len(send_invoice_now(delivery=theirs[1])) == 4
    assert set(Delivery.objects.filter(invoice=other).values_list("status", "scheduled_for")) == {
        (DeliveryStatus.QUEUED, None)
    }


@pytest.mark.django_db
def test_a_deleted_mailbox_holds_its_scheduled_rows_and_a_new_one_keeps_their_time(invoice):
    later = timezone.now() + datetime.timedelta(days=1)
    row = queue_invoice_email(invoice, send_at=later)
    Delivery.objects.filter(pk=row.pk).update(channel="smtp")
    assert hold_without_mailbox(practitioner_id=invoice.practitioner_id) == 1
    row.refresh_from_db()
    assert (row.status, row.scheduled_for) == (DeliveryStatus.HELD, later)
    assert "casella SMTP personale è stata eliminata" in row.events.order_by("pk").last().text

    # The mailbox works again: a row scheduled for later waits for its time.
    assert resume_held(practitioner_id=invoice.practitioner_id) == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SCHEDULED


# --- timeline texts ------------------------------------------------------------------------


@pytest.mark.django_db
def test_timeline_texts_are_stored_in_italian_and_shown_in_the_readers_language(invoice):
    with translation.override("en"):
        delivery = queue_invoice_email(invoice)
    event = DeliveryEvent.objects.get(delivery=delivery, kind=EventKind.QUEUED)
    assert event.text == "Messa in coda."
    with translation.override("en"):
        assert event.display_text == "Queued."
    with translation.override("it"):
        assert event.display_text == "Messa in coda."


@pytest.mark.django_db
def test_a_timeline_text_with_values_is_translated_with_its_values(invoice):
    from emailsettings.failures import ErrorClass, Failure

    delivery = queue_invoice_email(invoice)
    claimed = lifecycle.claim(delivery.pk)
    failure = Failure(
        phase="rcpt", error_class=ErrorClass.TEMPORARY, code=451, reply="451 4.3.0 riprova"
    )
    assert lifecycle.record(claimed, failure) == DeliveryStatus.DEFERRED

    event = delivery.events.filter(kind=EventKind.ATTEMPT).get()
    assert event.text.startswith("451 4.3.0 riprova — nuovo tentativo tra ")
    with translation.override("en"):
        assert event.display_text.startswith("451 4.3.0 riprova — retrying in ")
        assert event.display_text.endswith(" seconds.")


@pytest.mark.django_db
def test_a_server_reply_is_shown_as_it_was(invoice):
    delivery = queue_invoice_email(invoice)
    event = DeliveryEvent.objects.create(
        delivery=delivery, kind=EventKind.ATTEMPT, text="250 2.0.0 Ok: queued as 1234 (100%)"
    )
    with translation.override("en"):
        assert event.display_text == "250 2.0.0 Ok: queued as 1234 (100%)"


@pytest.mark.django_db
def test_a_timeline_text_with_a_count_takes_the_right_form_in_english(invoice):
    delivery = queue_invoice_email(invoice)
    for count, italian, english in [
        (1, "1 volta prima", "1 time before"),
        (3, "3 volte prima", "3 times before"),
    ]:
        text = lifecycle.EventText(
            "L'invio si è interrotto %(count)d volta prima che il messaggio partisse: "
            "non viene più ritentato. Il messaggio non è partito.",
            {"count": count},
            plural="L'invio si è interrotto %(count)d volte prima che il messaggio partisse: "
            "non viene più ritentato. Il messaggio non è partito.",
        )
        event = DeliveryEvent.objects.create(
            delivery=delivery, kind=EventKind.ATTEMPT, **text.columns()
        )
        assert italian in event.text
        with translation.override("en"):
            assert english in event.display_text
