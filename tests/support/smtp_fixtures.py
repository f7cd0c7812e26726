"""Fixtures for tests that talk SMTP: real aiosmtpd servers on loopback (devtools.smtpserver).

Registered for every test through ``pytest_plugins`` in ``tests/conftest.py``.

- ``local_ca`` (session): a test certificate authority in a temporary directory, with the
  certificates ``server`` (localhost, 127.0.0.1, ::1), ``wronghost`` (signed by the CA but
  for ``mail.altrove.test``) and ``selfsigned`` (for localhost, trusted by no one).
- ``trust_local_ca``: sets ``EMAILSETTINGS_SMTP_EXTRA_CA_FILE`` to the CA, so the guarded
  connection trusts the test servers. Every server fixture below uses it. A real Celery
  worker needs it too: ``celery_worker_factory(EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file)``.
- ``smtp_server_factory(tls="starttls"|"implicit"|"none", users=…, behaviour=…, cert=…,
  xoauth2=check, pipelining=False)`` (``check(user, token)`` also offers AUTH XOAUTH2;
  ``pipelining=True`` offers PIPELINING, RFC 2920)
  starts a :class:`~devtools.smtpserver.SmtpTestServer` (stopped after the test);
  ``smtp_server``: one STARTTLS server accepting :data:`SMTP_USER` / :data:`SMTP_PASSWORD`.
- ``silent_server``: accepts TCP connections and never answers (timeouts).
- ``smtp_account_factory(server, practitioner=None, **fields)``: a saved ``SmtpAccount``
  pointing at ``server`` (host 127.0.0.1, its port, matching security, the test credentials).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.smtpserver import Behaviour, LocalCA, SilentServer, SmtpTestServer

SMTP_USER = "anna.bianchi@example.test"
SMTP_PASSWORD = "Segreta-Di-Prova-42!"  # distinctive, so leaks are easy to spot
WRONG_HOST = "mail.altrove.test"


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    ca = LocalCA.create(tmp_path_factory.mktemp("smtp-ca"))
    ca.issue("wronghost", (WRONG_HOST,))
    ca.issue("selfsigned", ("localhost", "127.0.0.1", "::1"), self_signed=True)
    return ca


@pytest.fixture
def trust_local_ca(settings: Any, local_ca: LocalCA) -> LocalCA:
    settings.EMAILSETTINGS_SMTP_EXTRA_CA_FILE = local_ca.ca_file
    return local_ca


@pytest.fixture
def smtp_server_factory(trust_local_ca: LocalCA) -> Iterator[Callable[..., SmtpTestServer]]:
    servers: list[SmtpTestServer] = []

    def start(
        *,
        tls: str = "starttls",
        users: dict[str, str] | None = None,
        behaviour: Behaviour | None = None,
        cert: str = "server",
        host: str = "127.0.0.1",
        smtputf8: bool = True,
        xoauth2: Callable[[str, str], bool] | None = None,
        pipelining: bool = False,
    ) -> SmtpTestServer:
        server = SmtpTestServer(
            ca=trust_local_ca,
            tls=tls,
            users={SMTP_USER: SMTP_PASSWORD} if users is None else users,
            behaviour=behaviour,
            cert=cert,
            host=host,
            smtputf8=smtputf8,
            xoauth2=xoauth2,
            pipelining=pipelining,
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    return smtp_server_factory()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture
def smtp_account_factory(db: Any, practitioner: Any) -> Callable[..., Any]:
    from emailsettings.models import SmtpAccount

    def make(server: SmtpTestServer | SilentServer | None = None, **fields: Any) -> SmtpAccount:
        owner = fields.pop("practitioner", practitioner)
        password = fields.pop("password", SMTP_PASSWORD)
        values: dict[str, Any] = {
            "email": SMTP_USER,
            "sender_name": "Studio Bianchi",
            "preset": "custom",
            "host": "127.0.0.1",
            "port": server.port if server is not None else 587,
            "security": "ssl" if getattr(server, "tls", "") == "implicit" else "starttls",
            "username": SMTP_USER,
        }
        values.update(fields)
        SmtpAccount.objects.filter(practitioner=owner).delete()
        account = SmtpAccount(practitioner=owner, **values)
        account.set_password(password)
        account.save()
        return account

    return make
