"""Bounces recognised in real bounce messages and matched to the practitioner's deliveries.

The samples are real bounces from real MTAs (``tests/data/bounces/``, from the bounce
detector's own test data); the addresses expected are those its own tests expect. Each one
is matched to a personal-SMTP delivery the way it would be in the practitioner's mailbox: by
the Message-ID the bounce quotes, or, when it quotes none, by the bounced address.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from django.utils import timezone

from emailsettings.backchannel import bounces
from emailsettings.failures import ErrorClass
from emailsettings.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    SuppressedAddress,
)
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[3] / "tests" / "data" / "bounces"
WINDOW = datetime.timedelta(days=7)

# file → (addresses reported, permanent?) as the detector's own tests expect them.
EXPECTED: dict[str, tuple[set[str], bool]] = {
    "postfix_01.eml": ({"xxxxx@local.ie"}, True),
    "postfix_02.eml": ({"yyyyy@digicool.com"}, True),
    "exim_01.eml": ({"delangen@its.tudelft.nl"}, True),
    "dsn_01.eml": ({"jimmymcegypt@go.com"}, True),
    "dsn_02.eml": ({"zzzzz@zeus.hud.ac.uk"}, True),
    "dsn_09.eml": ({"pr@allen-heath.com"}, True),
    "microsoft_01.eml": ({"djbennett@ikon.com"}, True),
    "qmail_01.eml": ({"psadisc@wwwmail.n-h.de"}, True),
    "yahoo_02.eml": ({"agarciamartiartu@yahoo.es"}, True),
    "simple_01.eml": ({"bbbsss@turbosport.com"}, True),
    "sendmail_01.eml": ({"zzzzz@nfg.nl", "zzzzz@shaft.coal.nl"}, True),
    "aol_01.eml": ({"screenname@aol.com"}, True),
    "smtp32_01.eml": ({"oliver@pcworld.com.ph"}, True),
    "dsn_05.eml": ({"pkocmid@atlas.cz"}, False),
    "simple_03.eml": ({"jacobus@geo.co.za"}, False),
}

PATIENT_REPLY = b"""\
From: Chiara Gallo <chiara.gallo@example.test>
To: Studio Bianchi <studio@example.test>
Subject: Re: Fattura n. 12/2026
In-Reply-To: <abc123@studio.example.test>
Date: Tue, 1 Dec 2026 10:00:00 +0100
Message-ID: <reply-1@example.test>
Content-Type: text/plain; charset=utf-8

Grazie dottoressa, ho ricevuto la fattura. Il bonifico parte domani.
"""

NEWSLETTER = b"""\
From: Ordine degli Psicologi <news@ordine.example.test>
To: studio@example.test
Subject: Newsletter di dicembre: la casella piena di eventi
List-Unsubscribe: <mailto:unsubscribe@ordine.example.test>
Date: Tue, 1 Dec 2026 09:00:00 +0100
Content-Type: text/plain; charset=utf-8

Delivery failed? No: this is a newsletter about mail delivery and returned mail.
"""


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def smtp_delivery(practitioner, recipient: str, **fields) -> Delivery:
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=recipient))
    values = {"channel": "smtp", "status": "sent", "sent_at": timezone.now()}
    values.update(fields)
    return DeliveryFactory(invoice=invoice, recipient=recipient, **values)


def test_every_sample_is_in_the_list():
    assert sorted(path.name for path in SAMPLES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_bounces_report_the_addresses_their_detector_expects(name):
    expected, permanent = EXPECTED[name]
    bounce = bounces.parse(sample(name))
    assert bounce is not None
    assert (bounce.permanent if permanent else bounce.temporary) == expected
    assert not (bounce.temporary if permanent else bounce.permanent)


@pytest.mark.parametrize("raw", [PATIENT_REPLY, NEWSLETTER], ids=["reply", "newsletter"])
def test_a_reply_or_a_newsletter_is_not_a_bounce(raw):
    assert bounces.parse(raw) is None


QUOTING = sorted(n for n, (_, permanent) in EXPECTED.items() if permanent and n != "aol_01.eml")


@pytest.mark.parametrize("name", QUOTING)
def test_a_permanent_bounce_marks_its_delivery_bounced_and_suppresses_the_address(
    name, practitioner
):
    bounce = bounces.parse(sample(name))
    assert bounce is not None and bounce.message_ids
    address = sorted(bounce.permanent)[0]
    # Matched by the quoted Message-ID: anyone can write to the mailbox.
    delivery = smtp_delivery(practitioner, address, message_id=bounce.message_ids[0])
    untouched = smtp_delivery(practitioner, "altro.paziente@example.test")

    assert bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW) == [delivery.pk]

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert delivery.last_error_class == ErrorClass.BOUNCED
    event = DeliveryEvent.objects.filter(delivery=delivery).latest("id")
    assert event.kind == EventKind.MAILBOX
    assert event.text.startswith(f"Rimbalzata: l'indirizzo {address} non esiste")
    assert SuppressedAddress.objects.filter(practitioner=practitioner, address=address).exists()
    untouched.refresh_from_db()
    assert untouched.status == DeliveryStatus.SENT


def test_the_dsn_reason_is_shown(practitioner):
    bounce = bounces.parse(sample("dsn_09.eml"))
    assert bounce is not None and bounce.message_ids
    delivery = smtp_delivery(practitioner, "pr@allen-heath.com", message_id=bounce.message_ids[0])

    bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW)

    event = DeliveryEvent.objects.filter(delivery=delivery).latest("id")
    assert bounce.reasons["pr@allen-heath.com"] in event.text
    assert bounce.reasons["pr@allen-heath.com"]


def test_a_delay_warning_is_only_a_timeline_entry(practitioner):
    bounce = bounces.parse(sample("dsn_05.eml"))
    assert bounce is not None and bounce.message_ids
    address = sorted(bounce.temporary)[0]
    delivery = smtp_delivery(practitioner, address, message_id=bounce.message_ids[0])

    bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.last_error_class == ""
    assert "ritardo" in DeliveryEvent.objects.filter(delivery=delivery).latest("id").text
    assert not SuppressedAddress.objects.filter(address=address).exists()


def test_another_practitioners_delivery_is_never_touched(practitioner, other_practitioner):
    """A bounce in one practitioner's mailbox that quotes another's Message-ID (or names
    an address another practitioner also mails) changes nothing of theirs."""
    bounce = bounces.parse(sample("dsn_01.eml"))
    assert bounce is not None and bounce.message_ids
    theirs = smtp_delivery(
        other_practitioner, "jimmymcegypt@go.com", message_id=bounce.message_ids[0]
    )

    assert bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW) == []

    theirs.refresh_from_db()
    assert theirs.status == DeliveryStatus.SENT
    assert not SuppressedAddress.objects.exists()


def test_a_bounce_naming_another_address_does_not_touch_the_quoted_delivery(practitioner):
    """The patient's provider forwarded the invoice and the forward bounced: the patient's
    own address is fine and is not suppressed."""
    bounce = bounces.parse(sample("dsn_01.eml"))
    assert bounce is not None and bounce.message_ids
    delivery = smtp_delivery(
        practitioner, "paziente@example.test", message_id=bounce.message_ids[0]
    )

    assert bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW) == []

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


def test_a_bounce_quoting_none_of_ours_is_only_a_note_on_the_latest_recent_send(practitioner):
    """A real AOL bounce that quotes no Message-ID: it could be anyone's word about the
    address, so the invoice stays "inviata" and the address stays usable; the practitioner
    finds a note on the latest recent send to it."""
    bounce = bounces.parse(sample("aol_01.eml"))
    assert bounce is not None and not bounce.message_ids
    old = smtp_delivery(
        practitioner, "screenname@aol.com", sent_at=timezone.now() - datetime.timedelta(days=30)
    )
    smart_mail = smtp_delivery(practitioner, "screenname@aol.com", channel="smart_mail")
    recent = smtp_delivery(practitioner, "screenname@aol.com")

    assert bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW) == []

    for row in (old, smart_mail, recent):
        row.refresh_from_db()
        assert row.status == DeliveryStatus.SENT
    assert not SuppressedAddress.objects.exists()
    [note] = DeliveryEvent.objects.filter(delivery=recent)
    assert "non cita questa fattura" in note.text
    assert not DeliveryEvent.objects.filter(delivery__in=[old, smart_mail]).exists()


def test_a_delay_warning_quoting_none_of_ours_changes_nothing(practitioner):
    bounce = bounces.parse(sample("simple_03.eml"))
    assert bounce is not None and not bounce.message_ids
    delivery = smtp_delivery(practitioner, sorted(bounce.temporary)[0])

    assert bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW) == []

    assert not DeliveryEvent.objects.filter(delivery=delivery).exists()


def test_a_second_reading_of_the_same_bounce_adds_nothing(practitioner):
    bounce = bounces.parse(sample("postfix_01.eml"))
    assert bounce is not None
    delivery = smtp_delivery(practitioner, "xxxxx@local.ie", message_id=bounce.message_ids[0])
    bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW)
    events = DeliveryEvent.objects.filter(delivery=delivery).count()

    bounces.apply(bounce, practitioner_id=practitioner.pk, window=WINDOW)

    assert DeliveryEvent.objects.filter(delivery=delivery).count() == events
