"""One way to write amounts, numbers and dates in the whole UI (``psicogest.formatting`` and
its template filters), and the pages that show them."""

from __future__ import annotations

import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import translation

from emailsettings.covermail.keywords import KEYWORDS_BY_NAME
from psicogest.formatting import (
    format_amount,
    format_date,
    format_datetime,
    format_long_date,
    format_long_datetime,
    format_number,
)
from tests.factories import InvoiceFactory, PatientFactory

ROME = ZoneInfo("Europe/Rome")
# 1 December 2026, 19:10 UTC is 20:10 in Rome (CET); a Tuesday.
EVENING = datetime.datetime(2026, 12, 1, 19, 10, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1320"), "€ 1.320,00"),
        (Decimal("0"), "€ 0,00"),
        (Decimal("1234567.891"), "€ 1.234.567,89"),
        (Decimal("999.995"), "€ 1.000,00"),
        (Decimal("-12.5"), "€ -12,50"),
        (70, "€ 70,00"),
        (None, ""),
    ],
)
def test_amounts(value, expected):
    assert format_amount(value) == expected


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [(20000, 0, "20.000"), (999, 0, "999"), (1234567, 0, "1.234.567"), (1234.5, 1, "1.234,5")],
)
def test_numbers(value, decimals, expected):
    assert format_number(value, decimals) == expected


def test_dates_and_times_are_in_local_time():
    assert format_date(datetime.date(2026, 1, 5)) == "05/01/2026"
    assert format_datetime(EVENING) == "01/12/2026 20:10"
    # Shortly before midnight UTC it is already the next day in Rome.
    late = datetime.datetime(2026, 12, 31, 23, 30, tzinfo=datetime.UTC)
    assert format_date(late) == "01/01/2027"


def test_long_dates_read_as_italian_is_written():
    with translation.override("it"):
        assert format_long_datetime(EVENING) == "martedì 1 dicembre 2026, 20:10"
        assert format_long_date(datetime.date(2026, 3, 2)) == "lunedì 2 marzo 2026"


def test_long_dates_follow_the_english_page():
    with translation.override("en"):
        assert format_long_datetime(EVENING) == "Tuesday 1 December 2026, 20:10"


def test_the_mail_and_the_pages_share_the_amount_format():
    invoice = InvoiceFactory.build(total=Decimal("1320"))
    assert KEYWORDS_BY_NAME["importo"].value(invoice) == "€ 1.320,00"


def test_template_filters():
    template = Template(
        "{% load formatting %}{{ total|amount }}|{{ n|number }}|{{ day|short_date }}|"
        "{{ at|short_datetime }}|{{ at|long_datetime }}|"
        "{{ missing|amount }}{{ missing|long_datetime }}"
    )
    with translation.override("it"):
        text = template.render(
            Context(
                {
                    "total": Decimal("1320.00"),
                    "n": 20000,
                    "day": datetime.date(2026, 1, 5),
                    "at": EVENING,
                }
            )
        )
    assert text == "€ 1.320,00|20.000|05/01/2026|01/12/2026 20:10|martedì 1 dicembre 2026, 20:10|"


@pytest.mark.django_db
def test_invoice_pages_show_italian_amounts(logged_client, practitioner):
    invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner),
        total=Decimal("1320.00"),
        issue_date=datetime.date(2026, 12, 1),
    )
    for url in (reverse("invoices"), reverse("invoice", args=[invoice.pk])):
        content = logged_client.get(url).content.decode()
        assert "€ 1.320,00" in content
        assert "1320,00" not in content
        assert "01/12/2026" in content


@pytest.mark.django_db
def test_mailbox_times_read_naturally(logged_client, practitioner):
    from emailsettings.models import MailboxStatus, SmtpAccount

    account = SmtpAccount(
        practitioner=practitioner,
        email=practitioner.email,
        preset="custom",
        host="smtp.example.test",
        port=587,
        security="starttls",
        username=practitioner.email,
        status=MailboxStatus.OK,
        last_verified_at=EVENING,
    )
    account.set_password("x")
    account.save()
    content = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "martedì 1 dicembre 2026, 20:10" in content
    status = logged_client.get(reverse("emailsettings:mailbox_status")).json()
    assert status["result"]["at_display"] == "martedì 1 dicembre 2026, 20:10"
