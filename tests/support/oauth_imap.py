"""A private Dovecot IMAP server whose users log in with SASL XOAUTH2, the bearer token
checked at the test authorization server (``tests/support/oauth_server.py``) by RFC 7662
introspection: Dovecot's own ``oauth2`` passdb, as a provider's IMAP side checks tokens.

``oauth_imap(server)`` starts one for a :class:`devtools.oauthserver.LocalAuthorizationServer`
(its ``url`` and the client's credentials), IMAPS on a free loopback port with a certificate
from the test CA; ``deliver(user, raw)`` puts a message in a user's INBOX (maildir ``new/``);
``log_text()`` is Dovecot's log. Stopped at the end of the test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.smtpserver import LocalCA, free_port
from tests.support.mta_fixtures import DOVECOT
from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET


class OAuthImap:
    host = "127.0.0.1"

    def __init__(self, *, ca: LocalCA, directory: Path, introspection_url: str):
        self.ca_file = ca.ca_file
        self.directory = directory
        self.port = free_port(self.host)
        self.log_path = directory / "dovecot.log"
        self.mail_dir = directory / "mail"
        entry = pwd.getpwnam("mail")
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        directory.chmod(0o755)
        self.mail_dir.mkdir(mode=0o755)
        os.chown(self.mail_dir, self.uid, self.gid)
        cert = Path(ca.issue("oauth-imap", ("localhost", "127.0.0.1")))
        self.cert_file, self.key_file = directory / "server.pem", directory / "server.key"
        shutil.copyfile(cert, self.cert_file)
        shutil.copyfile(cert.with_suffix(".key"), self.key_file)
        self.key_file.chmod(0o600)
        oauth_conf = directory / "dovecot-oauth2.conf.ext"
        oauth_conf.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        oauth_conf.chmod(0o644)
        self.conf = directory / "dovecot.conf"
        self.conf.write_text(
            f"""\
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = psicogest-oauth-{directory.name}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
disable_plaintext_auth = yes
auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
mail_location = maildir:~
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth_conf}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.mail_dir}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        )

    def start(self) -> OAuthImap:
        # The daemon's children keep its standard streams: never a pipe we would wait on.
        with (self.directory / "start.log").open("wb") as out:
            subprocess.run(
                [DOVECOT, "-c", str(self.conf)], check=True, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15

        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"Dovecot did not start:\n{self.log_text()}")

    def stop(self) -> None:
        pid_file = self.directory / "run" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)

    def deliver(self, user: str, raw: bytes) -> None:
        root = self.mail_dir / user
        for sub in ("new", "cur", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.mail_dir / user, *(root / sub for sub in ("new", "cur", "tmp"))):
            os.chown(path, self.uid, self.gid)
        target = root / "new" / f"{time.time():.6f}.{uuid.uuid4().hex}.test"
        target.write_bytes(raw)
        os.chown(target, self.uid, self.gid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def oauth_imap(local_ca: LocalCA) -> Iterator[Callable[[Any], OAuthImap]]:
    started: list[OAuthImap] = []

    def start(server: Any) -> OAuthImap:
        # The client's credentials in the URL: Dovecot authenticates its introspection call.
        base = server.url.replace("http://", f"http://{CLIENT_ID}:{CLIENT_SECRET}@", 1)
        imap = OAuthImap(
            ca=local_ca,
            # Not under pytest's 0700 temporary root: Dovecot's processes run as "mail".
            directory=Path(tempfile.mkdtemp(prefix="psicogest-oauth-imap-")),
            introspection_url=base + "/introspect",
        ).start()
        started.append(imap)
        return imap

    yield start
    for imap in started:
        imap.stop()
        shutil.rmtree(imap.directory, ignore_errors=True)
