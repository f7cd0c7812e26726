"""SMTP PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write when the server offers it,
each reply still matched to its own command and delivery.

Against aiosmtpd (which serves pipelined commands but does not offer PIPELINING unless the
test server is told to) and against the private Postfix of ``tests/support/mta_fixtures.py``, which
offers it as every Postfix does.
"""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from devtools.smtpserver import Behaviour
from emailsettings.failures import ErrorClass
from emailsettings.mailbox import smtp
from emailsettings.mailbox import transaction as smtpsend
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory
from tests.support.mta_fixtures import MTA_PATIENT, PostfixMTA
from tests.support.smtp_fixtures import SMTP_PASSWORD, SMTP_USER

pytestmark = pytest.mark.django_db


def refuse_some(address: str, attempt: int) -> str | None:
    """RCPT replies told apart by recipient: each must land on its own delivery."""
    local = address.split("@")[0]
    if local == "sconosciuto":
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    if local == "grigio":
        return "450 4.2.0 <grigio>: Recipient address rejected: Greylisted, try later"
    return None


@pytest.fixture
def fast(settings: Any) -> None:
    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    settings.EMAILSETTINGS_SMTP_SEND_TIMEOUT_SECONDS = 10.0


def smtp_channel(practitioner: Any) -> None:
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )


def queue_to(practitioner: Any, addresses: list[str]) -> list[Delivery]:
    invoices = [
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=address))
        for address in addresses
    ]
    return queue_invoice_emails(invoices)


class Transcript:
    """What the client did on one connection, in order: each write and each reply read."""

    def __init__(self, connection: Any) -> None:
        self.events: list[str] = []
        send, getreply = connection.send, connection.getreply

        def recording_send(data: bytes | str) -> None:
            text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
            verbs = [line.split(":")[0].split(" ")[0].upper() for line in text.split("\r\n")]
            self.events.append("send " + " ".join(v for v in verbs if v)[:60])
            send(data)

        def recording_getreply() -> tuple[int, bytes]:
            code, reply = getreply()
            self.events.append(f"reply {code}")
            return code, reply

        connection.send, connection.getreply = recording_send, recording_getreply


def open_test_connection(server: Any) -> Any:
    return smtp.open_connection(
        host="127.0.0.1",
        port=server.port,
        security="starttls",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )


# --- the transaction ----------------------------------------------------------------------


def test_aiosmtpd_offers_pipelining_only_when_told(smtp_server_factory):
    plain, pipelined = smtp_server_factory(), smtp_server_factory(pipelining=True)
    for server, offered in ((plain, False), (pipelined, True)):
        connection = open_test_connection(server)
        try:
            assert bool(connection.has_extn("pipelining")) is offered
        finally:
            smtp.close_quietly(connection)


def test_envelope_goes_in_one_write_and_the_data_only_after_354(smtp_server_factory):
    server = smtp_server_factory(pipelining=True)
    connection = open_test_connection(server)
    transcript = Transcript(connection)
    phases: list[str] = []
    try:
        reply = smtpsend.send_message(
            connection,
            message=b"Subject: x\r\n\r\nciao\r\n",
            from_addr=SMTP_USER,
            to_addrs=["a@example.test"],
            on_phase=phases.append,
        )
    finally:
        smtp.close_quietly(connection)

    assert reply.code == 250
    assert transcript.events[:4] == ["send MAIL RCPT DATA", "reply 250", "reply 250", "reply 354"]
    assert transcript.events[4].startswith("send ")  # the message data
    assert transcript.events[5] == "reply 250"
    # One round trip before the data: only "data" is reported before the group.
    assert phases == ["data", "data_sent"]
    assert server.messages[0].rcpt_tos == ["a@example.test"]


def test_refused_recipient_resets_and_the_session_goes_on(smtp_server_factory):
    server = smtp_server_factory(pipelining=True, behaviour=Behaviour(rcpt_reply=refuse_some))
    connection = open_test_connection(server)
    transcript = Transcript(connection)
    try:
        with pytest.raises(smtp.DeliveryError) as caught:
            smtpsend.send_message(
                connection,
                message=b"Subject: x\r\n\r\nciao\r\n",
                from_addr=SMTP_USER,
                to_addrs=["sconosciuto@example.test"],
            )
        # aiosmtpd refuses DATA without a valid recipient: no message data went out.
        assert transcript.events[:4] == [
            "send MAIL RCPT DATA",
            "reply 250",
            "reply 550",
            "reply 503",
        ]
        assert transcript.events[4:6] == ["send RSET", "reply 250"]
        reply = smtpsend.send_message(
            connection,
            message=b"Subject: y\r\n\r\nciao\r\n",
            from_addr=SMTP_USER,
            to_addrs=["buono@example.test"],
        )
    finally:
        smtp.close_quietly(connection)

    failure = caught.value.failure
    assert (failure.phase, failure.code, failure.enhanced) == ("rcpt", 550, "5.1.1")
    assert failure.error_class == ErrorClass.RECIPIENT_REFUSED
    assert not failure.after_data
    assert reply.code == 250
    assert [m.rcpt_tos for m in server.messages] == [["buono@example.test"]]
    assert server.connections == 1


class Careless354Server:
    """Offers PIPELINING and answers 354 to DATA although it refused the only recipient
    (RFC 2920 forbids it; a client must still not send a message then). Plain TCP: the
    client under test is smtplib with :func:`smtpsend.send_message`."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _address = self.listener.accept()
        with client:
            client.sendall(b"220 careless ESMTP\r\n")
            buffer = b""
            while b"\r\n" not in buffer:
                buffer += client.recv(4096)
            client.sendall(b"250-careless\r\n250 PIPELINING\r\n")
            while buffer.count(b"\r\n") < 4:  # EHLO, MAIL, RCPT, DATA
                buffer += client.recv(4096)
            client.sendall(b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n")
            client.settimeout(5)
            while chunk := client.recv(4096):  # until the client hangs up
                buffer += chunk
            self.received = buffer


def test_354_after_a_refused_recipient_drops_the_session_and_sends_nothing():
    server = Careless354Server()
    connection = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    connection.ehlo()

    with pytest.raises(smtp.DeliveryError) as caught:
        smtpsend.send_message(
            connection,
            message=b"Subject: x\r\n\r\nciao\r\n",
            from_addr="a@example.test",
            to_addrs=["b@example.test"],
        )
    server.thread.join(timeout=10)

    failure = caught.value.failure
    assert (failure.phase, failure.code, failure.enhanced) == ("rcpt", 550, "5.1.1")
    assert not failure.after_data
    assert connection.sock is None  # dropped: the next message opens a new session
    assert b"Subject" not in server.received and b"\r\n.\r\n" not in server.received


def test_pipelining_can_be_turned_off(smtp_server_factory, settings):
    settings.EMAILSETTINGS_SMTP_PIPELINING = False
    server = smtp_server_factory(pipelining=True)
    connection = open_test_connection(server)
    transcript = Transcript(connection)
    try:
        smtpsend.send_message(
            connection,
            message=b"Subject: x\r\n\r\nciao\r\n",
            from_addr=SMTP_USER,
            to_addrs=["a@example.test"],
        )
    finally:
        smtp.close_quietly(connection)
    assert transcript.events[:2] == ["send MAIL", "reply 250"]


# --- a batch through the worker -----------------------------------------------------------


def spy_on_pipelining(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real: Callable[..., None] = smtpsend.pipelined_envelope

    def spy(connection: Any, from_addr: str, to_addrs: list[str], **kwargs: Any) -> None:
        calls.append(list(to_addrs))
        real(connection, from_addr, to_addrs, **kwargs)

    monkeypatch.setattr(smtpsend, "pipelined_envelope", spy)
    return calls


def test_batch_replies_land_on_their_own_delivery(
    fast, smtp_server_factory, smtp_account_factory, practitioner, monkeypatch
):
    server = smtp_server_factory(pipelining=True, behaviour=Behaviour(rcpt_reply=refuse_some))
    smtp_account_factory(server)
    smtp_channel(practitioner)
    addresses = [
        "uno@example.test",
        "sconosciuto@example.test",
        "tre@example.test",
        "grigio@example.test",
        "cinque@example.test",
    ]
    rows = queue_to(practitioner, addresses)
    calls = spy_on_pipelining(monkeypatch)

    send_batch(delivery_ids=[row.pk for row in rows])

    found = {row.pk: row for row in Delivery.objects.filter(pk__in=[r.pk for r in rows])}
    got = [found[row.pk] for row in rows]
    assert [row.status for row in got] == [
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.SENT,
        DeliveryStatus.DEFERRED,
        DeliveryStatus.SENT,
    ]
    assert [row.last_error_code for row in got] == [None, 550, None, 450, None]
    assert got[1].last_error_class == ErrorClass.RECIPIENT_REFUSED
    assert got[3].last_error_class == ErrorClass.GREYLISTED
    assert "sconosciuto" in got[1].last_error_text and "Greylisted" in got[3].last_error_text
    # The accepted ones arrived, in order, each with its own Message-ID; one session.
    assert [m.rcpt_tos for m in server.messages] == [[a] for a in addresses[::2]]
    assert server.message_ids() == [got[i].message_id for i in (0, 2, 4)]
    assert server.connections == 1
    assert calls == [[a] for a in addresses]


def test_a_row_changed_after_the_batch_loaded_it_goes_out_as_changed(
    fast, smtp_server_factory, smtp_account_factory, practitioner, monkeypatch
):
    """Each message is built before its row is claimed, from the rows the batch loaded: a
    row that changed meanwhile (here its cover text, rewritten while the first message was
    on its way) is built again from what is stored, never sent as it was."""
    from django.utils import timezone

    from emailsettings.outbox import lifecycle

    server = smtp_server_factory(pipelining=True)
    smtp_account_factory(server)
    smtp_channel(practitioner)
    first, second = queue_to(practitioner, ["uno@example.test", "due@example.test"])
    real_claim = lifecycle.claim

    def claim_after_an_edit(pk: int, **kwargs: Any) -> Any:
        if pk == second.pk:
            Delivery.objects.filter(pk=pk).update(
                body_text="Testo corretto dopo il caricamento.", updated_at=timezone.now()
            )
        return real_claim(pk, **kwargs)

    monkeypatch.setattr(lifecycle, "claim", claim_after_an_edit)

    send_batch(delivery_ids=[first.pk, second.pk])

    assert set(
        Delivery.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    ) == {DeliveryStatus.SENT}
    plain = server.messages[1].message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "Testo corretto dopo il caricamento." in plain.get_content()
    assert "Testo corretto" not in server.messages[0].data.decode()


# --- Postfix ------------------------------------------------------------------------------


@pytest.fixture
def mta(postfix_mta: PostfixMTA, trust_local_ca, settings, fast) -> PostfixMTA:
    settings.EMAILSETTINGS_SMTP_EXTRA_CA_FILE = postfix_mta.ca_file
    postfix_mta.clear_log()
    return postfix_mta


def test_postfix_pipelined_batch_with_a_refused_recipient_in_the_middle(
    mta, smtp_account_factory, practitioner, monkeypatch
):
    smtp_account_factory(
        None,
        host=mta.host,
        port=mta.submission_port,
        security="starttls",
        username=mta.user,
        email=mta.user,
        password=mta.password,
    )
    smtp_channel(practitioner)
    unknown = f"nessuno@{mta.domain}"
    before = len(mta.messages(MTA_PATIENT))
    rows = queue_to(practitioner, [MTA_PATIENT, unknown, MTA_PATIENT])
    calls = spy_on_pipelining(monkeypatch)

    result = send_batch(delivery_ids=[row.pk for row in rows])

    got = [Delivery.objects.get(pk=row.pk) for row in rows]
    assert [row.status for row in got] == [
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.SENT,
    ], [(row.status, row.last_error_text) for row in got]
    assert (got[1].last_error_code, got[1].last_error_enhanced) == (550, "5.1.1")
    assert got[1].last_error_class == ErrorClass.RECIPIENT_REFUSED
    assert unknown in got[1].last_error_text
    assert result.sessions_opened == 1
    assert len(calls) == 3
    delivered = mta.wait_for_messages(MTA_PATIENT, before + 2)
    ids = [got[0].message_id, got[2].message_id]
    for message_id in ids:
        assert sum(message_id.encode() in raw for raw in delivered) == 1
    mta.wait_for_log(r"postfix/submission/smtpd\[\d+\]: disconnect from")
    log = mta.log_text()
    # Postfix notices a client that pipelines without being offered it; never here.
    assert "improper command pipelining" not in log
    verbs = [c.split(":")[0].split(" ")[0].upper() for c in mta.client_commands("submission")]
    assert verbs.count("MAIL") == 3 and verbs.count("DATA") == 3 and verbs.count("RSET") == 1
