"""Payment reminders in time: the beat job run every hour across weeks (time-machine), each
reminder on the expected working day and hour, none on a weekend or an Italian holiday, one
catch-up after an outage, the cap, the weekly spacing, and every way reminders stop."""

from __future__ import annotations

import datetime
import zoneinfo
from decimal import Decimal

import pytest
import time_machine

from emailsettings.models import (
    Delivery,
    DeliveryStatus,
    EmailSettings,
    ReminderLevel,
    SuppressedAddress,
)
from emailsettings.outbox import reminders
from emailsettings.outbox.actions import resend
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.schedule import is_holiday, is_working_day
from psicogest.payments import mark_paid
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

ROME = zoneinfo.ZoneInfo("Europe/Rome")
UTC = datetime.UTC
D = datetime.date


def at(day: datetime.date, hour: int = 0, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ROME)


def run_beat(start: datetime.date, end: datetime.date, *, skip=lambda day: False) -> None:
    """The beat job every hour from ``start`` to ``end`` included (UTC steps, so the night
    the clocks change is neither lost nor doubled); each reminder is accepted by the server
    at once, as a worker would. ``skip(day)``: the system is down that day."""
    moment = at(start).astimezone(UTC)
    stop = at(end + datetime.timedelta(days=1)).astimezone(UTC)
    while moment < stop:
        if not skip(moment.astimezone(ROME).date()):
            with time_machine.travel(moment, tick=False):
                rows = reminders.create_due_reminders(now=moment)
            Delivery.objects.filter(pk__in=[row.pk for row in rows]).update(
                status=DeliveryStatus.SENT
            )
        moment += datetime.timedelta(hours=1)


def sent(invoice) -> list[tuple[int, datetime.datetime]]:
    """(level, local creation time) of the invoice's reminders to the patient, in order."""
    rows = Delivery.objects.filter(invoice=invoice, reminder_level__gt=0, role="patient")
    return [
        (row.reminder_level, row.created_at.astimezone(ROME))
        for row in rows.order_by("created_at", "id")
    ]


@pytest.fixture
def rules(practitioner):
    rules = reminders.rules_for(practitioner)
    rules.enabled = True
    rules.save()
    return rules


def set_levels(rules, *levels: tuple[int, int]) -> None:
    """Exactly these (level, days) enabled."""
    for row in rules.levels.all():
        days = dict(levels).get(row.level)
        row.enabled = days is not None
        row.days = days if days is not None else row.days
        row.save()


def invoice_due(practitioner, due: datetime.date, **fields):
    patient = PatientFactory(practitioner=practitioner, **fields.pop("patient", {}))
    return InvoiceFactory(patient=patient, due_date=due, issue_date=due, **fields)


def test_defaults_are_off_with_a_courteous_then_a_firmer_level(practitioner):
    rules = reminders.rules_for(practitioner)
    assert rules.enabled is False
    levels = list(rules.levels.values_list("level", "enabled", "days"))
    assert levels == [(1, True, 7), (2, True, 21), (3, False, 45)]
    invoice_due(practitioner, D(2026, 12, 1))
    run_beat(D(2026, 12, 1), D(2026, 12, 20))
    assert not Delivery.objects.filter(reminder_level__gt=0).exists()


def test_a_month_across_weekends_christmas_and_epiphany_each_on_its_expected_day_and_hour(
    practitioner, rules
):
    weekend = invoice_due(practitioner, D(2026, 12, 5))  # +7 is Saturday 12/12
    immacolata = invoice_due(practitioner, D(2026, 12, 1))  # +7 is 8/12, a holiday
    christmas = invoice_due(practitioner, D(2026, 12, 18))  # +7 is 25/12
    epiphany = invoice_due(practitioner, D(2026, 12, 16))  # +21 is 6/1
    run_beat(D(2026, 12, 1), D(2027, 1, 20))

    nine = datetime.time(9, 0)
    expected = {
        weekend: [(1, D(2026, 12, 14)), (2, D(2026, 12, 28))],  # 26/12 is Santo Stefano
        immacolata: [(1, D(2026, 12, 9)), (2, D(2026, 12, 22))],
        christmas: [(1, D(2026, 12, 28)), (2, D(2027, 1, 8))],
        epiphany: [(1, D(2026, 12, 23)), (2, D(2027, 1, 7))],
    }
    for invoice, wanted in expected.items():
        got = sent(invoice)
        assert [(level, moment.date()) for level, moment in got] == wanted, invoice.due_date
        assert all(moment.time() == nine for _level, moment in got)
    days = {
        row.astimezone(ROME).date()
        for row in Delivery.objects.filter(reminder_level__gt=0).values_list(
            "created_at", flat=True
        )
    }
    assert all(is_working_day(day) for day in days)
    for holiday in (D(2026, 12, 8), D(2026, 12, 25), D(2026, 12, 26), D(2027, 1, 1)):
        assert is_holiday(holiday) and holiday not in days
    assert is_holiday(D(2027, 1, 6)) and D(2027, 1, 6) not in days


def test_easter_monday_2027_moves_the_reminder_to_tuesday_inside_the_sending_window(
    practitioner, rules
):
    EmailSettings.objects.update_or_create(
        practitioner=practitioner,
        defaults={
            "window_days": "0123",  # Monday to Thursday
            "window_start": datetime.time(10, 0),
            "window_end": datetime.time(12, 0),
        },
    )
    easter = invoice_due(practitioner, D(2027, 3, 22))  # +7 is Easter Monday, 29/3
    friday = invoice_due(practitioner, D(2027, 3, 19))  # +21 is Friday 9/4: not in the window
    run_beat(D(2027, 3, 20), D(2027, 4, 20))
    assert is_holiday(D(2027, 3, 29))
    assert [(level, m.date(), m.time()) for level, m in sent(easter)] == [
        (1, D(2027, 3, 30), datetime.time(10, 0)),
        (2, D(2027, 4, 12), datetime.time(10, 0)),
    ]
    assert [(level, m.date()) for level, m in sent(friday)] == [
        (1, D(2027, 3, 30)),  # +7 was Friday 26/3, outside the window, then Easter Monday
        (2, D(2027, 4, 12)),
    ]


def test_a_four_day_outage_is_caught_up_once_per_invoice_then_levels_keep_a_week_apart(
    practitioner, rules
):
    set_levels(rules, (1, 1), (2, 3), (3, 30))
    down = {D(2027, 2, 1), D(2027, 2, 2), D(2027, 2, 3), D(2027, 2, 4)}
    before = invoice_due(practitioner, D(2027, 1, 28))  # level 1 on Friday 29/1
    missed_one = invoice_due(practitioner, D(2027, 2, 3))  # level 1 on 4/2, down
    missed_two = invoice_due(practitioner, D(2027, 1, 29))  # levels 1 and 2 on 1/2, down
    run_beat(D(2027, 1, 25), D(2027, 3, 31), skip=lambda day: day in down)

    on_friday = {
        invoice: [level for level, m in sent(invoice) if m.date() == D(2027, 2, 5)]
        for invoice in (before, missed_one, missed_two)
    }
    # Exactly one catch-up each, on the first working morning: the highest level due.
    assert on_friday == {before: [2], missed_one: [1], missed_two: [2]}
    for invoice in (before, missed_one, missed_two):
        got = sent(invoice)
        days = [m.date() for _level, m in got]
        assert len(days) == len(set(days)), "two levels in one day"
        assert all((b - a).days >= 7 for a, b in zip(days, days[1:], strict=False))
        levels = [level for level, _m in got]
        assert levels == sorted(set(levels)) and len(levels) <= 3  # the cap
        assert not down.intersection(days)
    assert [level for level, _m in sent(missed_one)] == [1, 2, 3]
    # Level 2 of missed_one was due 5/2 too, but a week must pass after the catch-up.
    assert sent(missed_one)[1][1].date() == D(2027, 2, 12)


def test_the_cap_no_reminder_after_the_last_level_however_long_it_stays_unpaid(practitioner, rules):
    invoice = invoice_due(practitioner, D(2026, 12, 1))
    run_beat(D(2026, 12, 1), D(2027, 2, 10))
    assert [level for level, _m in sent(invoice)] == [1, 2]


def test_an_invoice_paid_or_under_the_minimum_gets_none(practitioner, rules):
    paid = invoice_due(practitioner, D(2026, 12, 2))
    small = invoice_due(practitioner, D(2026, 12, 2), total=Decimal("30.00"))
    partly = invoice_due(practitioner, D(2026, 12, 2), amount_paid=Decimal("1200.00"))
    unpaid = invoice_due(practitioner, D(2026, 12, 2))
    rules.minimum_amount = Decimal("50.00")
    rules.save()
    mark_paid(invoice=paid)
    run_beat(D(2026, 12, 9), D(2026, 12, 9))
    assert sent(paid) == [] and sent(small) == [] and sent(partly) == []
    assert [level for level, _m in sent(unpaid)] == [1]


def test_a_pause_with_an_end_date_resumes_the_next_working_day(practitioner, rules):
    invoice = invoice_due(practitioner, D(2026, 12, 2))  # level 1 due 9/12
    reminders.pause(invoice=invoice, until=D(2026, 12, 15), reason="Ha chiesto una dilazione")
    run_beat(D(2026, 12, 1), D(2026, 12, 20))
    assert [(level, m.date()) for level, m in sent(invoice)] == [(1, D(2026, 12, 16))]


def test_a_patient_who_asked_for_none_and_a_suppressed_or_bounced_address_stop_reminders(
    practitioner, rules
):
    no_thanks = invoice_due(practitioner, D(2026, 12, 2), patient={"no_reminders": True})
    suppressed = invoice_due(practitioner, D(2026, 12, 2))
    SuppressedAddress.objects.create(
        practitioner=practitioner, address=suppressed.patient.email, reason="bounce"
    )
    bounced = invoice_due(practitioner, D(2026, 12, 2))
    DeliveryFactory(invoice=bounced, recipient=bounced.patient.email, status="bounced")
    fine = invoice_due(practitioner, D(2026, 12, 2))
    DeliveryFactory(invoice=fine, recipient=fine.patient.email, status="delivered")
    run_beat(D(2026, 12, 9), D(2026, 12, 9))
    assert sent(no_thanks) == [] and sent(suppressed) == [] and sent(bounced) == []
    assert [level for level, _m in sent(fine)] == [1]


def test_a_reminder_that_bounced_stops_the_next_level(practitioner, rules):
    invoice = invoice_due(practitioner, D(2026, 12, 2))
    run_beat(D(2026, 12, 9), D(2026, 12, 9))
    Delivery.objects.filter(invoice=invoice).update(status=DeliveryStatus.BOUNCED)
    run_beat(D(2026, 12, 10), D(2027, 1, 8))
    assert [level for level, _m in sent(invoice)] == [1]


def test_a_skipped_level_moves_on_to_the_next(practitioner, rules):
    invoice = invoice_due(practitioner, D(2026, 12, 2))
    reminders.skip_level(invoice=invoice, level=1)
    run_beat(D(2026, 12, 1), D(2027, 1, 10))
    assert [(level, m.date()) for level, m in sent(invoice)] == [(2, D(2026, 12, 23))]


def test_each_recipient_gets_its_own_reminder_with_the_invoice_as_the_patient_chose(
    practitioner, rules
):
    invoice = invoice_due(
        practitioner, D(2026, 12, 2), patient={"extra_emails": ["genitore@example.test"]}
    )
    with time_machine.travel(at(D(2026, 12, 9), 9), tick=False):
        rows = reminders.create_due_reminders(now=at(D(2026, 12, 9), 9))
    assert sorted((row.role, row.reminder_level) for row in rows) == [
        ("extra", 1),
        ("patient", 1),
    ]
    row = next(row for row in rows if row.role == "patient")
    assert row.status == DeliveryStatus.QUEUED and row.with_invoice
    assert row.subject == f"Promemoria: fattura n. {invoice.number} del 02/12/2026"
    assert "€ 1.234,56" in row.body_text and "02/12/2026" in row.body_text
    assert "IBAN" not in row.body_text
    # A second run the same day creates nothing.
    with time_machine.travel(at(D(2026, 12, 9), 10), tick=False):
        assert reminders.create_due_reminders(now=at(D(2026, 12, 9), 10)) == []


def test_the_reminder_quotes_the_iban_and_the_days_late_and_may_leave_the_invoice_out(
    practitioner, rules
):
    practitioner.iban = "IT60X0542811101000000123456"
    practitioner.save()
    rules.attach_invoice = False
    rules.save()
    level = ReminderLevel.objects.get(rules=rules, level=1)
    level.body_template = "Ritardo ${giorni_ritardo} giorni, da pagare ${importo_da_pagare}."
    level.save()
    invoice = invoice_due(practitioner, D(2026, 12, 2), amount_paid=Decimal("234.56"))
    with time_machine.travel(at(D(2026, 12, 9), 9), tick=False):
        [row] = reminders.create_due_reminders(now=at(D(2026, 12, 9), 9))
    assert row.body_text.strip() == "Ritardo 7 giorni, da pagare € 1.000,00."
    assert row.with_invoice is False
    level.body_template = ""
    level.save()
    with time_machine.travel(at(D(2026, 12, 16), 9), tick=False):
        [row2] = reminders.create_reminder(invoice=invoice, level=2)
    assert "IT60X0542811101000000123456" in row2.body_text
    assert "14 giorni fa" in row2.body_text


def test_upcoming_lists_the_next_fourteen_days(practitioner, rules):
    soon = invoice_due(practitioner, D(2026, 12, 2))  # level 1 on 9/12
    later = invoice_due(practitioner, D(2026, 12, 20))  # level 1 on 28/12: too far
    moment = at(D(2026, 12, 7), 8)
    with time_machine.travel(moment, tick=False):
        upcoming = reminders.due_reminders(
            practitioner=practitioner, now=moment, days=reminders.UPCOMING_DAYS
        )
    assert [(due.invoice, due.level, due.day) for due in upcoming] == [(soon, 1, D(2026, 12, 9))]
    assert later not in [due.invoice for due in upcoming]


def test_the_plan_is_one_rule_for_every_case():
    steps = [reminders.Step(1, 7), reminders.Step(2, 21)]
    history = reminders.History()
    # Due Friday 18/12/2026: level 1 on 25/12 → Monday 28/12.
    planned = reminders.plan(
        due_date=D(2026, 12, 18), steps=steps, history=history, from_day=D(2026, 12, 1)
    )
    assert planned == reminders.Planned(1, D(2026, 12, 28))
    done = reminders.History(used=frozenset({1, 2}), last_sent=D(2026, 12, 28))
    assert (
        reminders.plan(due_date=D(2026, 12, 18), steps=steps, history=done, from_day=D(2027, 1, 1))
        is None
    )


def test_an_english_patient_gets_the_english_text_when_written_else_the_italian(
    practitioner, rules
):
    level = ReminderLevel.objects.get(rules=rules, level=1)
    level.subject_template_en = "Reminder: invoice ${numero_fattura}"
    level.body_template_en = "Dear ${nome}, ${importo_da_pagare} is still due."
    level.save()
    english = invoice_due(practitioner, D(2026, 12, 2), patient={"language": "en"})
    italian = invoice_due(practitioner, D(2026, 12, 2))
    with time_machine.travel(at(D(2026, 12, 9), 9), tick=False):
        rows = reminders.create_due_reminders(now=at(D(2026, 12, 9), 9))
    by_invoice = {row.invoice_id: row for row in rows}
    assert by_invoice[english.pk].subject == f"Reminder: invoice {english.number}"
    assert by_invoice[english.pk].body_text.strip() == "Dear Giulia, € 1.234,56 is still due."
    assert by_invoice[italian.pk].subject.startswith("Promemoria: fattura n.")
    # Level 2 has no English text: the English patient reads the Italian one.
    with time_machine.travel(at(D(2026, 12, 23), 9), tick=False):
        [row2] = reminders.create_reminder(invoice=english, level=2)
    assert row2.subject.startswith("Secondo promemoria")


def test_a_resent_reminder_stays_a_reminder_of_its_level_and_a_double_click_sends_once(
    practitioner, rules
):
    invoice = invoice_due(practitioner, D(2026, 12, 2))
    [row] = reminders.create_reminder(invoice=invoice, level=1)
    Delivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.FAILED)
    row.refresh_from_db()
    again = resend(delivery=row)
    twice = resend(delivery=row)
    assert again.pk == twice.pk and again.resend_of_id == row.pk
    assert again.reminder_level == 1 and again.with_invoice
    assert again.subject.startswith("Promemoria: fattura n.")
    assert again.status == DeliveryStatus.QUEUED
    # The invoice mail itself is still its own kind: sending it is not the reminder's row.
    assert queue_invoice_email(invoice).reminder_level == 0
