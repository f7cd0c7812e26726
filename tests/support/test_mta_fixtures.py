"""The ``postfix_mta`` fixture (tests/support/mta_fixtures.py), proved with plain smtplib/imaplib.

No product code here: these tests show what the real Postfix + Dovecot do, so the product's
tests can rely on it.
"""

from __future__ import annotations

import email
import imaplib
import re
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from tests.support.mta_fixtures import MTA_PATIENT, MTA_PATIENT_PASSWORD, PostfixMTA


@pytest.fixture
def mta(postfix_mta: PostfixMTA) -> PostfixMTA:
    postfix_mta.clear_log()
    return postfix_mta


@pytest.fixture(scope="module")
def tls_context(postfix_mta: PostfixMTA) -> ssl.SSLContext:
    """A verifying client context that trusts only the project's test CA."""
    return ssl.create_default_context(cafile=postfix_mta.ca_file)


def _message(mta: PostfixMTA, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mta.user
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Gentile paziente,\nin allegato la fattura.\n")
    return message


def _submission(mta: PostfixMTA, context: ssl.SSLContext, port: int | None = None):
    client = smtplib.SMTP(mta.host, port or mta.submission_port, timeout=10)
    client.starttls(context=context)
    client.ehlo()
    return client


def test_starttls_login_and_local_delivery(mta: PostfixMTA, tls_context: ssl.SSLContext):
    before = len(mta.messages(MTA_PATIENT))
    subject = f"Fattura n. {uuid.uuid4().hex[:8]}"
    with smtplib.SMTP(mta.host, mta.submission_port, timeout=10) as client:
        client.ehlo("studio.client.test")
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), "AUTH is offered only after STARTTLS"
        client.starttls(context=tls_context)
        client.ehlo("studio.client.test")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        code, _ = client.login(mta.user, mta.password)
        assert code == 235
        assert client.send_message(_message(mta, MTA_PATIENT, subject)) == {}

    delivered = mta.wait_for_messages(MTA_PATIENT, before + 1)[-1]
    parsed = email.message_from_bytes(delivered, policy=default_policy)
    assert parsed["Subject"] == subject
    assert parsed["Delivered-To"] == MTA_PATIENT
    assert "with ESMTPSA" in parsed["Received"]  # authenticated submission over TLS
    mta.wait_for_log(r"disconnect from")
    assert mta.auth_attempts() == [(1, 1)]
    assert "status=sent" in mta.wait_for_log(r"to=<paziente@studio\.test>.*status=sent")[0][0]


def test_wrong_password_gets_535_and_is_counted(mta: PostfixMTA, tls_context: ssl.SSLContext):
    with _submission(mta, tls_context) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.login(mta.user, "not-the-password")
    assert failure.value.smtp_code == 535
    assert failure.value.smtp_error.startswith(b"5.7.8 ")

    mta.wait_for_log(r"disconnect from")
    # smtplib's login() tries every mechanism both sides know: PLAIN, then LOGIN.
    assert mta.auth_attempts() == [(0, 2)]
    assert mta.failed_auth_count() == 2
    assert [c.split()[:2] for c in mta.client_commands() if c.startswith("AUTH")] == [
        ["AUTH", "PLAIN"],
        ["AUTH", "LOGIN"],
    ]


def test_unknown_local_user_is_refused_at_rcpt(mta: PostfixMTA, tls_context: ssl.SSLContext):
    with _submission(mta, tls_context) as client:
        client.login(mta.user, mta.password)
        client.mail(mta.user)
        code, reply = client.rcpt(f"nessuno@{mta.domain}")
        assert (code, reply.split()[0]) == (550, b"5.1.1")
        assert b"User unknown" in reply
        # The known one is still fine in the same transaction.
        assert client.rcpt(MTA_PATIENT)[0] == 250
        client.rset()


@pytest.mark.parametrize(
    ("listener", "offers_8bitmime"), [("submission_port", True), ("no8bitmime_port", False)]
)
def test_8bitmime_offered_only_where_expected(
    mta: PostfixMTA, tls_context: ssl.SSLContext, listener: str, offers_8bitmime: bool
):
    with _submission(mta, tls_context, getattr(mta, listener)) as client:
        assert client.has_extn("8bitmime") is offers_8bitmime
        assert client.has_extn("smtputf8")  # smtputf8_enable = yes on every listener
        assert client.has_extn("auth")


def test_smtps_port_speaks_implicit_tls(mta: PostfixMTA, tls_context: ssl.SSLContext):
    before = len(mta.messages(MTA_PATIENT))
    with smtplib.SMTP_SSL(mta.host, mta.smtps_port, timeout=10, context=tls_context) as client:
        assert not client.has_extn("starttls")
        client.login(mta.user, mta.password)
        client.send_message(_message(mta, MTA_PATIENT, "Via smtps"))
        cipher = client.sock.version()
    assert cipher in {"TLSv1.2", "TLSv1.3"}
    delivered = mta.wait_for_messages(MTA_PATIENT, before + 1)[-1]
    assert b"Subject: Via smtps" in delivered
    assert mta.wait_for_log(r"postfix/smtps/smtpd\[\d+\]: disconnect from")


def test_certificate_is_from_the_project_test_ca(mta: PostfixMTA):
    # Without the test CA the certificate cannot be verified: proof it is the CA's.
    with smtplib.SMTP(mta.host, mta.submission_port, timeout=10) as client:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())
    # And it names localhost as well as 127.0.0.1.
    context = ssl.create_default_context(cafile=mta.ca_file)
    with smtplib.SMTP("localhost", mta.submission_port, timeout=10) as client:
        client.starttls(context=context)
        assert client.sock.getpeercert()["subject"] == ((("commonName", "localhost"),),)


def test_nothing_is_relayed_to_another_domain(mta: PostfixMTA, tls_context: ssl.SSLContext):
    before = len(mta.messages(mta.user))
    with _submission(mta, tls_context) as client:
        # Not authenticated (TLS only): every recipient is refused.
        client.mail(mta.user)
        code, reply = client.rcpt("paziente@example.com")
        assert code == 554 and reply.startswith(b"5.7.1 ")
        client.rset()
        # Authenticated: another domain resolves to the error transport, refused at RCPT.
        client.login(mta.user, mta.password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(_message(mta, "paziente@example.com", "Fuori"))
        code, reply = refused.value.recipients["paziente@example.com"]
        assert code == 550 and reply.startswith(b"5.7.1 ")
        assert b"relaying to other domains is disabled" in reply

    mta.wait_for_log(r"disconnect from")
    log = mta.log_text()
    # Both refused before a queue file existed ("NOQUEUE"), no delivery line ("<id>: to=").
    assert len(re.findall(r"NOQUEUE: reject: RCPT .* to=<paziente@example\.com>", log)) == 2
    assert not re.search(r"\b[0-9A-F]{6,}: to=<paziente@example\.com>", log)
    assert not re.search(r"relay=(?!virtual|none)", log)  # no delivery but local ones
    assert len(mta.messages(mta.user)) == before  # not even a bounce: refused up front


def test_client_commands_show_mail_from_parameters(mta: PostfixMTA, tls_context: ssl.SSLContext):
    with _submission(mta, tls_context) as client:
        client.login(mta.user, mta.password)
        body = "Subject: Caffè\r\n\r\nÈ pronta la fattura.\r\n".encode()
        client.sendmail(mta.user, [MTA_PATIENT], body, mail_options=["BODY=8BITMIME"])
        client.sendmail(mta.user, [MTA_PATIENT], body, mail_options=["SMTPUTF8"])
    mta.wait_for_log(r"disconnect from")
    mail_from = [c for c in mta.client_commands("submission") if c.upper().startswith("MAIL")]
    assert mail_from == [
        f"mail FROM:<{mta.user}> size={len(body)} BODY=8BITMIME",
        f"mail FROM:<{mta.user}> size={len(body)} SMTPUTF8",
    ]
    assert mta.client_commands("smtps") == []


def test_imap_reads_the_delivered_mail(mta: PostfixMTA, tls_context: ssl.SSLContext):
    subject = f"Per IMAP {uuid.uuid4().hex[:8]}"
    before = len(mta.messages(MTA_PATIENT))
    with _submission(mta, tls_context) as client:
        client.login(mta.user, mta.password)
        client.send_message(_message(mta, MTA_PATIENT, subject))
    mta.wait_for_messages(MTA_PATIENT, before + 1)

    imap = imaplib.IMAP4_SSL(mta.host, mta.imap_port, ssl_context=tls_context, timeout=10)
    try:
        assert imap.login(MTA_PATIENT, MTA_PATIENT_PASSWORD)[0] == "OK"
        status, _ = imap.select("INBOX", readonly=True)
        assert status == "OK"
        status, found = imap.search(None, "SUBJECT", f'"{subject}"')
        assert status == "OK" and len(found[0].split()) == 1
    finally:
        imap.logout()
    with pytest.raises(imaplib.IMAP4.error):
        bad = imaplib.IMAP4_SSL(mta.host, mta.imap_port, ssl_context=tls_context, timeout=10)
        try:
            bad.login(MTA_PATIENT, "sbagliata")
        finally:
            bad.shutdown()
