"""The product's SMTP client against a real MTA: the private Postfix + Dovecot of
``tests/support/mta_fixtures.py`` (``postfix_mta``), not a server written for the tests.

What a practitioner would notice, checked on Postfix's side too (its log of the client's
commands, its ``auth=N/M`` counters, the maildirs it delivers to):

- a wrong password costs one failed login at the provider, never two (lockouts);
- with the right password the invoice arrives, 8-bit when the server offers 8BITMIME and
  quoted-printable when it does not, and parses cleanly with its PDF and Message-ID;
- STARTTLS chosen on the implicit-TLS port (a wrong setting, whatever the port number);
- recipients with an accented domain (IDNA in RCPT TO) or an accented local part (SMTPUTF8).

The worker logic runs in process (``send_batch``); no Celery worker is started.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path

import pytest

from emailsettings.covermail.message import attachment_name
from emailsettings.exceptions import DeliveryError, InvalidRecipient
from emailsettings.failures import ErrorClass
from emailsettings.health.verify import verify_mailbox
from emailsettings.mailbox import smtp
from emailsettings.mailbox import transaction as smtpsend
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    MailboxStatus,
    SmtpAccount,
)
from emailsettings.outbox.queueing import create_deliveries, queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory
from tests.support.mta_fixtures import MTA_PATIENT, PostfixMTA

pytestmark = pytest.mark.django_db

IDN_PATIENT = "mario.rossi@università.it"
IDN_ENVELOPE = "mario.rossi@xn--universit-y1a.it"
UTF8_LOCAL_PATIENT = "màrio@studio.test"


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def mta(postfix_mta: PostfixMTA, trust_local_ca, settings) -> PostfixMTA:
    """The shared Postfix, its log forgotten so far; the guarded connection trusts its CA."""
    # The Postfix certificate is issued by the very CA trust_local_ca points at.
    assert Path(postfix_mta.ca_file).resolve() == Path(trust_local_ca.ca_file).resolve()
    settings.EMAILSETTINGS_SMTP_EXTRA_CA_FILE = postfix_mta.ca_file
    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    settings.EMAILSETTINGS_SMTP_SEND_TIMEOUT_SECONDS = 10.0
    postfix_mta.clear_log()
    return postfix_mta


@pytest.fixture
def mailbox(mta: PostfixMTA, smtp_account_factory, practitioner):
    """``mailbox(port=…, security=…, password=…)``: the practitioner's SmtpAccount on the
    Postfix (maria@studio.test), and invoices go out through it (channel "smtp")."""
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )

    def make(
        *, port: int | None = None, security: str = "starttls", password: str | None = None
    ) -> SmtpAccount:
        return smtp_account_factory(
            None,
            host=mta.host,
            port=mta.submission_port if port is None else port,
            security=security,
            username=mta.user,
            email=mta.user,
            password=mta.password if password is None else password,
        )

    return make


def service_of(mta: PostfixMTA, port: int) -> str:
    return {
        mta.submission_port: "submission",
        mta.smtps_port: "smtps",
        mta.no8bitmime_port: "no8bitmime",
    }[port]


def wait_for_disconnect(mta: PostfixMTA, service: str, count: int = 1) -> None:
    mta.wait_for_log(rf"postfix/{service}/smtpd\[\d+\]: disconnect from", count=count)


def commands(mta: PostfixMTA, service: str, verb: str) -> list[str]:
    """The client's ``verb`` commands (MAIL, RCPT, AUTH…) as Postfix logged them."""
    return [c for c in mta.client_commands(service) if c.upper().startswith(verb.upper())]


def assert_no_message_data(mta: PostfixMTA) -> None:
    """Postfix offers PIPELINING, so DATA went with the refused RCPT in one write; Postfix
    refused it (no valid recipient), the session was reset and no message was queued."""
    assert commands(mta, "submission", "DATA") == ["data"]
    assert commands(mta, "submission", "RSET") == ["rset"]
    assert re.search(r"554 5\.5\.1 Error: no valid recipients", mta.log_text())
    assert " queued as " not in mta.log_text()


def invoice_for(practitioner, address: str):
    return InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=address))


def delivered_with(mta: PostfixMTA, user: str, message_id: str, before: int) -> bytes:
    """The one message in ``user``'s maildir carrying ``message_id``."""
    mta.wait_for_messages(user, before + 1)
    found = [raw for raw in mta.messages(user) if message_id.encode() in raw]
    assert len(found) == 1, f"{len(found)} messages with {message_id} for {user}"
    return found[0]


def body_of(raw: bytes) -> bytes:
    return re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[1]


def parse_strictly(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.strict)
    assert message.defects == []
    for part in message.walk():
        assert part.defects == [], (part.get_content_type(), part.defects)
    return message


def text_parts(message: email.message.EmailMessage) -> list[email.message.EmailMessage]:
    return [p for p in message.walk() if p.get_content_maintype() == "text"]


# --- 1. a wrong password: one failed login ------------------------------------------------


def test_wrong_password_verify_costs_one_failed_login(mta, mailbox, practitioner):
    account = mailbox(password="password-sbagliata")

    result = verify_mailbox(account=account)

    assert not result.ok
    assert result.failure is not None
    assert result.failure.phase == "auth"
    assert result.failure.error_class == ErrorClass.AUTH_FAILED
    assert result.failure.code == 535
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert account.last_error["error_class"] == ErrorClass.AUTH_FAILED
    assert "password-sbagliata" not in str(account.last_error)
    wait_for_disconnect(mta, "submission")
    assert mta.auth_attempts() == [(0, 1)]
    assert mta.failed_auth_count() == 1
    assert [c.split()[:2] for c in commands(mta, "submission", "AUTH")] == [["AUTH", "PLAIN"]]


def test_wrong_password_send_costs_one_failed_login_and_holds_the_invoice(
    mta, mailbox, practitioner
):
    account = mailbox(password="password-sbagliata")
    before = len(mta.messages(MTA_PATIENT))
    delivery = queue_invoice_email(invoice_for(practitioner, MTA_PATIENT))
    assert delivery.status == DeliveryStatus.QUEUED

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.HELD
    assert delivery.attempts == 1
    assert delivery.last_error_code == 535
    assert delivery.last_error_class == ErrorClass.AUTH_FAILED
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    wait_for_disconnect(mta, "submission")
    assert mta.auth_attempts() == [(0, 1)]
    assert mta.failed_auth_count() == 1
    assert commands(mta, "submission", "MAIL") == []  # nothing was attempted after AUTH
    assert len(mta.messages(MTA_PATIENT)) == before


# --- 2. the right password: verified, delivered, 8-bit or quoted-printable ----------------


def test_right_password_verify_succeeds_and_sends_nothing(mta, mailbox, practitioner):
    # The probe's RCPT is the practitioner's own address: one the test MTA knows.
    practitioner.email = mta.user
    practitioner.save()
    account = mailbox()
    before = len(mta.messages(mta.user))

    result = verify_mailbox(account=account)

    assert result.ok, result.failure
    account.refresh_from_db()
    assert account.status == MailboxStatus.OK
    assert account.last_verified_at is not None
    assert account.last_error == {}
    wait_for_disconnect(mta, "submission")
    assert mta.auth_attempts() == [(1, 1)]
    assert mta.failed_auth_count() == 0
    assert [c.lower() for c in commands(mta, "submission", "RCPT")] == [f"rcpt to:<{mta.user}>"]
    assert commands(mta, "submission", "DATA") == []
    time.sleep(0.3)
    assert len(mta.messages(mta.user)) == before


@pytest.mark.parametrize("listener", ["submission_port", "no8bitmime_port"])
def test_invoice_with_accented_cover_mail_is_delivered_intact(mta, mailbox, practitioner, listener):
    port = getattr(mta, listener)
    service = service_of(mta, port)
    mailbox(port=port)
    invoice = invoice_for(practitioner, MTA_PATIENT)
    before = len(mta.messages(MTA_PATIENT))
    delivery = queue_invoice_email(invoice)
    # The default cover mail is Italian with accents ("Il pagamento è da effettuare…").
    assert "è" in delivery.body_text and not delivery.body_text.isascii()

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT, (delivery.last_error_text, delivery.status)
    raw = delivered_with(mta, MTA_PATIENT, delivery.message_id, before)
    wait_for_disconnect(mta, service)
    [mail_from] = commands(mta, service, "MAIL")
    if service == "submission":
        # Offered: the 8-bit body goes as it is, declared.
        assert mail_from == f"mail FROM:<{mta.user}> BODY=8BITMIME", mail_from
        assert not body_of(raw).isascii()
    else:
        # Not offered: nothing 8-bit may be sent; the text parts are re-encoded.
        assert "BODY=" not in mail_from.upper(), mail_from
        assert body_of(raw).isascii()
    assert mail_from.lower().startswith(f"mail from:<{mta.user}>")
    assert mta.auth_attempts() == [(1, 1)]

    message = parse_strictly(raw)
    assert message["Message-ID"] == delivery.message_id
    assert message["Subject"] == delivery.subject
    assert message["To"] == MTA_PATIENT
    assert message["From"].addresses[0].addr_spec == mta.user
    parts = text_parts(message)
    assert {p.get_content_type() for p in parts} == {"text/plain", "text/html"}
    for part in parts:
        encoding = part["Content-Transfer-Encoding"].lower()
        if service == "submission":
            assert encoding == "8bit", part.get_content_type()
        else:
            assert encoding == "quoted-printable", part.get_content_type()
        raw_payload = part.get_payload(decode=False)
        assert raw_payload.isascii() is (service != "submission")
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert plain.strip() == delivery.body_text.replace("\r\n", "\n").strip()
    assert html.strip() == delivery.body_html.replace("\r\n", "\n").strip()
    assert "è" in plain and "è" in html
    [pdf] = list(message.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == attachment_name(invoice.number)
    with invoice.pdf.open("rb") as handle:
        assert pdf.get_content() == handle.read()


# --- 3. STARTTLS chosen on the implicit-TLS port ------------------------------------------


def test_starttls_on_implicit_tls_port_verify(mta, mailbox, practitioner):
    """The port speaks TLS first: the client waits for a plain greeting that never comes.
    Whatever the port number (the test Postfix's is random, not 465), the product probes a
    TLS handshake and reports the wrong security setting, not a silent server."""
    assert mta.smtps_port != 465
    account = mailbox(port=mta.smtps_port, security="starttls")

    began = time.monotonic()
    result = verify_mailbox(account=account, timeout=3)
    elapsed = time.monotonic() - began

    assert not result.ok
    assert result.failure is not None
    assert elapsed < 15, elapsed
    assert result.failure.error_class == ErrorClass.TLS_FAILED
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert account.last_error["error_class"] == ErrorClass.TLS_FAILED
    wait_for_disconnect(mta, "smtps")
    assert mta.auth_attempts() == []
    assert mta.client_commands("smtps") == []  # not a single SMTP command got through


def test_starttls_on_implicit_tls_port_send(mta, mailbox, practitioner, settings):
    """A send with that setting holds the invoice for the practitioner to fix the mailbox
    ("porta e sicurezza non corrispondono"), instead of retrying it as a timeout."""
    settings.EMAILSETTINGS_SMTP_SEND_TIMEOUT_SECONDS = 3.0
    account = mailbox(port=mta.smtps_port, security="starttls")
    delivery = queue_invoice_email(invoice_for(practitioner, MTA_PATIENT))

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.HELD
    assert delivery.last_error_class == ErrorClass.TLS_FAILED
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    wait_for_disconnect(mta, "smtps")
    assert mta.client_commands("smtps") == []


def test_implicit_tls_port_with_ssl_security_works(mta, mailbox, practitioner):
    """The right setting for the same port, as a control: verify succeeds over smtps."""
    practitioner.email = mta.user
    practitioner.save()
    account = mailbox(port=mta.smtps_port, security="ssl")

    result = verify_mailbox(account=account, timeout=5)

    assert result.ok, result.failure
    wait_for_disconnect(mta, "smtps")
    assert mta.auth_attempts() == [(1, 1)]


# --- 4. accented recipients ---------------------------------------------------------------


def test_accented_domain_goes_in_idna_form_and_the_refusal_is_recorded(mta, mailbox, practitioner):
    mailbox()
    delivery = queue_invoice_email(invoice_for(practitioner, IDN_PATIENT))
    assert delivery.recipient == IDN_PATIENT

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    # The test MTA relays nowhere: a clean 5xx at RCPT, recorded, never left "sending".
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error_code == 550
    assert delivery.last_error_enhanced == "5.7.1"
    assert delivery.last_error_class == ErrorClass.RECIPIENT_REFUSED
    assert "relaying to other domains is disabled" in delivery.last_error_text
    assert delivery.phase == "rcpt"
    wait_for_disconnect(mta, "submission")
    assert [c.lower() for c in commands(mta, "submission", "RCPT")] == [f"rcpt to:<{IDN_ENVELOPE}>"]
    [mail_from] = commands(mta, "submission", "MAIL")
    assert "SMTPUTF8" not in mail_from.upper()  # an ASCII local part needs no SMTPUTF8
    assert_no_message_data(mta)


def test_accented_local_part_is_refused_when_queueing(mta, mailbox, practitioner):
    """What a practitioner actually gets for ``màrio@studio.test``: the invoice is not
    queued (Django's ``validate_email`` accepts only ASCII before the @), so no SMTP
    session is opened, although the server offers SMTPUTF8."""
    mailbox()
    invoice = invoice_for(practitioner, UTF8_LOCAL_PATIENT)

    with pytest.raises(InvalidRecipient):
        queue_invoice_email(invoice)

    assert not Delivery.objects.filter(invoice=invoice).exists()
    time.sleep(0.3)
    assert mta.client_commands() == []


def test_accented_local_part_reaching_the_worker_goes_with_smtputf8(mta, mailbox, practitioner):
    """A row with ``màrio@studio.test`` (created past the queue's address check, with the
    same function the queue uses): the envelope declares SMTPUTF8 and Postfix's answer,
    550 5.1.1 (no such user), is recorded as a refused recipient."""
    mailbox()
    invoice = invoice_for(practitioner, UTF8_LOCAL_PATIENT)
    [delivery] = create_deliveries(invoices=[invoice], recipients={invoice.pk: UTF8_LOCAL_PATIENT})
    assert delivery.status == DeliveryStatus.QUEUED

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED, (delivery.status, delivery.last_error_text)
    assert delivery.attempts == 1
    assert delivery.last_error_code == 550
    assert delivery.last_error_enhanced == "5.1.1"
    assert delivery.last_error_class == ErrorClass.RECIPIENT_REFUSED
    assert delivery.phase == "rcpt"
    wait_for_disconnect(mta, "submission")
    [mail_from] = commands(mta, "submission", "MAIL")
    assert "SMTPUTF8" in mail_from.upper().split(), mail_from
    [rcpt] = commands(mta, "submission", "RCPT")
    assert rcpt.lower() == f"rcpt to:<{UTF8_LOCAL_PATIENT}>", rcpt  # UTF-8 as it is
    assert_no_message_data(mta)


def test_accented_local_part_through_the_smtp_layer(mta):
    """The same envelope through ``emailsettings.mailbox.smtp`` directly (no row): SMTPUTF8 in MAIL
    FROM, the RCPT refused 550 5.1.1 and classified as a refused recipient."""
    connection = smtp.open_connection(
        host=mta.host,
        port=mta.submission_port,
        security="starttls",
        username=mta.user,
        password=mta.password,
        timeout=10,
    )
    try:
        assert connection.has_extn("smtputf8")
        with pytest.raises(DeliveryError) as refused:
            smtpsend.send_message(
                connection,
                message="Subject: Prova\r\n\r\nÈ la fattura.\r\n".encode(),
                from_addr=mta.user,
                to_addrs=[UTF8_LOCAL_PATIENT],
            )
    finally:
        smtp.close_quietly(connection)
    failure = refused.value.failure
    assert (failure.phase, failure.code, failure.enhanced) == ("rcpt", 550, "5.1.1")
    assert failure.error_class == ErrorClass.RECIPIENT_REFUSED
    assert not failure.after_data
    wait_for_disconnect(mta, "submission")
    [mail_from] = commands(mta, "submission", "MAIL")
    assert {"BODY=8BITMIME", "SMTPUTF8"} <= set(mail_from.upper().split()), mail_from
