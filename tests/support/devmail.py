"""``make run``'s local mail server for tests: the SMTP test server with its IMAP side
(``devtools/imapserver.py``) and its "provider" (``devtools/provider.py``), on free
loopback ports, trusted by the product and offered as the "Server di test locale" preset
(fixture ``local_mail_server``)."""

from __future__ import annotations

import ssl
import time

import imapclient
import pytest

from devtools.imapserver import ImapTestServer, MailStore
from devtools.pec import PROVIDER_ADDRESS
from devtools.provider import DevProvider
from devtools.smtpserver import LocalCA, SmtpTestServer

USER = "maria@studio.test"


class LocalServer:
    def __init__(self, tmp_path) -> None:
        self.ca = LocalCA.create(tmp_path / "ca")
        self.store = MailStore(tmp_path / "caselle")
        self.provider = DevProvider(
            self.store, delay=0.2, signer=self.ca.pec_signer(PROVIDER_ADDRESS)
        )
        self.smtp = SmtpTestServer(
            ca=self.ca,
            tls="starttls",
            on_accepted=lambda r: self.provider.accepted(
                login=r.login, mail_from=r.mail_from, rcpt_tos=r.rcpt_tos, data=r.data
            ),
        ).start()
        self.imap = ImapTestServer(store=self.store, ssl_context=self.ca.server_context()).start()

    def stop(self) -> None:
        self.provider.stop()
        self.imap.stop()
        self.smtp.stop()

    def worker_env(self) -> dict[str, str]:
        """What a worker process needs to use this server as the local preset."""
        return {
            "LOCAL_SMTP_HOST": "localhost",
            "LOCAL_SMTP_PORT": str(self.smtp.port),
            "LOCAL_IMAP_PORT": str(self.imap.port),
            "EMAILSETTINGS_SMTP_EXTRA_CA_FILE": self.ca.ca_file,
            "EMAILSETTINGS_PEC_TRUST_BUNDLE": self.ca.ca_file,
        }

    def client(self, user: str = USER) -> imapclient.IMAPClient:
        context = ssl.create_default_context(cafile=self.ca.ca_file)
        client = imapclient.IMAPClient(
            "localhost", port=self.imap.port, ssl=True, ssl_context=context
        )
        client.login(user, "qualsiasi")
        return client

    def wait_for(self, count: int, folder: str = "INBOX", user: str = USER) -> list:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = self.store.messages(user, folder)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} messages never reached {folder}")


@pytest.fixture
def local_mail_server(tmp_path, settings):
    server = LocalServer(tmp_path)
    settings.EMAILSETTINGS_SMTP_EXTRA_CA_FILE = server.ca.ca_file
    # Its "Gestore PEC di prova" signs with a key of the same CA, as make run's does.
    settings.EMAILSETTINGS_PEC_TRUST_BUNDLE = server.ca.ca_file
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {
        "host": "localhost",
        "port": server.smtp.port,
        "imap_port": server.imap.port,
    }
    yield server
    server.stop()


@pytest.fixture
def local_mailbox(local_mail_server, smtp_account_factory, practitioner):
    """The mailbox a new user sets up in make run: the local preset, sending through it,
    reading on."""
    from emailsettings.models import Channel, EmailSettings

    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )
    return smtp_account_factory(
        None,
        preset="local",
        host="localhost",
        port=local_mail_server.smtp.port,
        username=USER,
        email=USER,
        imap_enabled=True,
    )


def send_invoices_now(practitioner, *addresses: str) -> list:
    """One invoice to each of ``addresses``, sent in this process through the
    practitioner's mailbox; each must end ``sent``."""
    from emailsettings.models import DeliveryStatus
    from emailsettings.outbox.queueing import queue_invoice_email
    from emailsettings.outbox.worker import send_batch
    from tests.factories import InvoiceFactory, PatientFactory

    deliveries = [
        queue_invoice_email(
            InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=address))
        )
        for address in addresses
    ]
    send_batch(delivery_ids=[d.pk for d in deliveries])
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.SENT, delivery.last_error_text
    return deliveries
