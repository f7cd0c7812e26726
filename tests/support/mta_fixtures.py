"""A real MTA on loopback: a private Postfix (submission, smtps) with Dovecot SASL and IMAP.

Registered for every test through ``pytest_plugins`` in ``tests/conftest.py``. The session
fixture ``postfix_mta`` starts, in a temporary directory, software nobody here wrote, so a
test can check how the product's SMTP client behaves against it:

- a private **Dovecot** (``dovecot -c <its own config>``): the SASL authentication service
  Postfix asks (a unix socket), a passwd-file with the test users and an IMAP listener with
  implicit TLS on 127.0.0.1 (``imap_port``) reading the same maildirs Postfix delivers to;
- a private **Postfix** (``postfix -c <its own config_directory> start``) whose master.cf has
  only four smtpd listeners on 127.0.0.1 plus the internal services local delivery needs:

  ``submission_port``  STARTTLS required (``smtpd_tls_security_level=encrypt``), AUTH through
                       Dovecot after TLS, ``permit_sasl_authenticated,reject``;
  ``smtps_port``       the same with implicit TLS (``smtpd_tls_wrappermode=yes``, like 465);
  ``no8bitmime_port``  like ``submission_port`` but its EHLO does not offer 8BITMIME
                       (``smtpd_discard_ehlo_keywords=8bitmime``);
  ``accept_all_port``  like ``submission_port`` but RCPT to an unknown user of ``domain`` is
                       accepted (``smtpd_reject_unlisted_recipient=no``): ``virtual(8)`` then
                       bounces it to the sender ("User unknown in virtual mailbox table"),
                       as a recipient's server does after accepting the message.

  Mail for the users of ``domain`` (studio.test) is delivered by ``virtual(8)`` into maildirs
  under the temporary directory (``messages(user)``); RCPT to anyone else at that domain gets
  ``550 5.1.1``. Nothing ever leaves the machine: there is no ``smtp`` client service in
  master.cf, and ``default_transport``/``relay_transport`` are ``error``, so a recipient at
  another domain is refused at RCPT (``554 5.7.1`` unauthenticated, ``550 5.7.1`` after
  AUTH: smtpd rejects addresses that resolve to the error transport); nothing is queued.

Test-friendly deviations from a stock server: Dovecot answers a wrong password without its
2 s ``auth_failure_delay`` and without the per-IP penalty that grows after failed logins
(every test connects from 127.0.0.1); a failed AUTH still takes about 0.5 s. Everything
else (EHLO keywords, replies, SMTPUTF8, size limit 10240000) is Postfix 3.7's default.

The object (``PostfixMTA``): ``host``, ``submission_port``, ``smtps_port``,
``no8bitmime_port``, ``accept_all_port``, ``imap_port``, ``user``/``password``
(maria@studio.test), ``users``
(all accounts, also paziente@studio.test), ``domain``, ``ca_file``; ``log_text()``,
``clear_log()``, ``wait_for_log(regex)``, ``auth_attempts()``, ``failed_auth_count()``,
``client_commands(service=None)``, ``messages(user)``, ``wait_for_messages(user, count)``,
``dovecot_log_text()``. Call ``clear_log()`` at the start of a test that reads the log.

Both daemons listen only on 127.0.0.1. The certificate (``localhost``, ``127.0.0.1``) is issued
by the project's test CA (``local_ca``), so the product's guarded connection verifies it once
the test uses ``trust_local_ca``. The Postfix log (``log_text()``) has the SMTP dialogue too:
``debug_peer_list = 127.0.0.1`` makes smtpd log every client command (``client_commands()``),
including the base64 of AUTH exchanges, so it stays in the temporary directory.

The packages come from ``make test`` (``scripts/services.sh``); a missing binary is an error,
never a skip. Postfix needs root (``make test`` runs as root on the test machine).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.smtpserver import LocalCA, free_port

MTA_DOMAIN = "studio.test"
MTA_USER = f"maria@{MTA_DOMAIN}"
MTA_PASSWORD = "Password-Postfix-7!"
MTA_PATIENT = f"paziente@{MTA_DOMAIN}"
MTA_PATIENT_PASSWORD = "Paziente-Postfix-8!"

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
DOVECOT = "/usr/sbin/dovecot"
DOVECOT_IMAP = "/usr/lib/dovecot/imap"
REQUIRED_BINARIES = (POSTFIX, POSTCONF, DOVECOT, DOVECOT_IMAP)

# Where mail for any other domain goes: the error(8) transport, so smtpd refuses it at RCPT.
NO_RELAY = "error:5.7.1 relaying to other domains is disabled on the test MTA"

# The maildirs belong to the system "mail" user (uid/gid 8 on Debian): an unprivileged
# account that exists on every Debian machine, so nothing has to be created.
MAIL_ACCOUNT = "mail"

_CONNECT = re.compile(r"/smtpd\[\d+\]: connect from ", re.MULTILINE)
_DISCONNECT_LINE = re.compile(r"/smtpd\[\d+\]: disconnect from ", re.MULTILINE)
_QUEUED = re.compile(r"/cleanup\[\d+\]: \w+: message-id=", re.MULTILINE)
_REMOVED = re.compile(r"/qmgr\[\d+\]: \w+: removed$", re.MULTILINE)
_DISCONNECT = re.compile(r"/smtpd\[\d+\]: disconnect from \S+(?P<counters>.*)$", re.MULTILINE)
# "auth=1" when every AUTH succeeded, "auth=0/2" when 2 were tried and none succeeded.
_AUTH_COUNTER = re.compile(r"\bauth=(\d+)(?:/(\d+))?\b")
_AUTH_FAILED = re.compile(r"SASL \S+ authentication failed", re.MULTILINE)
# smtpd, verbose for debug_peer_list: "... postfix/submission/smtpd[12]: < localhost[127.0.0.1]:
# MAIL FROM:<a@b> BODY=8BITMIME".
_CLIENT_COMMAND = re.compile(
    r"^.*? postfix/(?P<service>[\w-]+)/smtpd\[\d+\]: < \S+\[[\d.:a-f]+\]: (?P<command>.*)$",
    re.MULTILINE,
)


def _passwd_entry(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


class PostfixMTA:
    """A private Postfix + Dovecot in ``directory``; see the module docstring."""

    host = "127.0.0.1"
    domain = MTA_DOMAIN
    user = MTA_USER
    password = MTA_PASSWORD

    def __init__(self, *, ca: LocalCA, directory: Path, users: dict[str, str] | None = None):
        self.ca = ca
        self.ca_file = ca.ca_file
        self.directory = directory
        self.users = dict(users or {MTA_USER: MTA_PASSWORD, MTA_PATIENT: MTA_PATIENT_PASSWORD})
        self.submission_port = free_port(self.host)
        self.smtps_port = free_port(self.host)
        self.no8bitmime_port = free_port(self.host)
        self.accept_all_port = free_port(self.host)
        self.imap_port = free_port(self.host)
        self.config_dir = directory / "postfix"
        self.queue_dir = directory / "queue"
        self.data_dir = directory / "data"
        self.mail_dir = directory / "mail"
        self.dovecot_dir = directory / "dovecot"
        self.dovecot_conf = self.dovecot_dir / "dovecot.conf"
        self.log_path = directory / "postfix.log"
        self.dovecot_log_path = self.dovecot_dir / "dovecot.log"
        self.sasl_socket = self.dovecot_dir / "run" / "auth-postfix"
        self.startup_seconds = 0.0
        self._log_offset = 0
        self._postfix_started = False
        self._dovecot_started = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PostfixMTA:
        missing = [path for path in REQUIRED_BINARIES if not os.access(path, os.X_OK)]
        if missing:
            raise RuntimeError(
                f"{', '.join(missing)} missing: `make test` installs the Debian packages "
                "postfix, dovecot-core and dovecot-imapd (scripts/services.sh)"
            )
        if os.geteuid() != 0:
            raise RuntimeError(
                "the private Postfix needs root: run the tests with `make test` as root"
            )
        began = time.monotonic()
        try:
            self._prepare_directories()
            self._write_certificate()
            self._write_dovecot_config()
            self._start_dovecot()
            self._write_postfix_config()
            self._start_postfix()
            self._wait_until_ready(timeout=30)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop both daemons; wait (up to 10 s) until their master processes have exited."""
        masters = []
        if self._postfix_started:
            self._postfix_started = False
            masters.append(self._pid(self.queue_dir / "pid" / "master.pid", "master"))
            self._run([POSTFIX, "-c", str(self.config_dir), "stop"], check=False)
        if self._dovecot_started:
            self._dovecot_started = False
            # SIGTERM to its master, as `dovecot stop` does (which then polls for ~3 s).
            pid = self._pid(self.dovecot_dir / "run" / "master.pid", "dovecot")
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pid = None
            masters.append(pid)
        for pid in masters:
            self._wait_for_exit(pid)

    # -- what tests look at ------------------------------------------------------------

    def log_text(self) -> str:
        """The Postfix log since the start (or the last ``clear_log()``)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def dovecot_log_text(self) -> str:
        try:
            return self.dovecot_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def clear_log(self, *, timeout: float = 10.0) -> None:
        """Forget the log so far: ``log_text()`` and the parsers start from here.

        Waits first (up to ``timeout``) until the MTA is idle in its log, every smtpd
        connection has its ``disconnect`` line and every queued message its ``removed``
        line, so that what an earlier test did is not seen by the next. The file itself is
        kept (postlogd has it open); only the read offset moves.
        """
        deadline = time.monotonic() + timeout
        while not self._idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            self._log_offset = self.log_path.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0

    def _idle(self) -> bool:
        try:
            log = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return True
        return len(_CONNECT.findall(log)) == len(_DISCONNECT_LINE.findall(log)) and len(
            _QUEUED.findall(log)
        ) == len(_REMOVED.findall(log))

    def wait_for_log(
        self, pattern: str, *, count: int = 1, timeout: float = 10.0
    ) -> list[re.Match[str]]:
        """Wait until ``pattern`` (a regex, multiline) matches ``count`` times in the log.

        Postfix writes its log asynchronously (through postlogd): wait for the line you need,
        e.g. ``"disconnect from"`` after closing a connection, before parsing the log.
        """
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log_text()))
            if len(matches) >= count:
                return matches
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} seen {len(matches)} times in the Postfix log, expected "
                    f"{count}, after {timeout}s:\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)

    def auth_attempts(self) -> list[tuple[int, int]]:
        """``(succeeded, tried)`` AUTH commands per finished connection, from the log.

        Parsed from smtpd's ``disconnect from ... auth=N/M`` lines (a connection without
        AUTH gives no entry). Wait for the disconnect first (``wait_for_log``).
        """
        attempts = []
        for disconnect in _DISCONNECT.finditer(self.log_text()):
            counter = _AUTH_COUNTER.search(disconnect.group("counters"))
            if counter:
                succeeded = int(counter.group(1))
                attempts.append((succeeded, int(counter.group(2) or succeeded)))
        return attempts

    def failed_auth_count(self) -> int:
        """How many ``SASL <mechanism> authentication failed`` warnings smtpd logged."""
        return len(_AUTH_FAILED.findall(self.log_text()))

    def client_commands(self, service: str | None = None) -> list[str]:
        """Every command line the clients sent, in order, as smtpd logged it.

        ``service``: "submission", "smtps" or "no8bitmime" to keep one listener's. The AUTH
        exchange appears too (base64, as sent). Lines appear shortly after the command: wait
        for the connection's disconnect first.
        """
        return [
            match.group("command")
            for match in _CLIENT_COMMAND.finditer(self.log_text())
            if service is None or match.group("service") == service
        ]

    def mailbox(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.mail_dir / (domain or self.domain) / local

    def messages(self, user: str) -> list[bytes]:
        """The messages delivered to ``user``'s maildir (new/ and cur/), oldest first."""
        root = self.mailbox(user)
        files = [path for sub in ("new", "cur") for path in (root / sub).glob("*")]
        files.sort(key=lambda path: (path.stat().st_mtime_ns, path.name))
        return [path.read_bytes() for path in files]

    def wait_for_messages(self, user: str, count: int = 1, timeout: float = 15.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages(user)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{user} has {len(messages)} messages, expected {count}, after {timeout}s."
                    f"\nPostfix log:\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)

    # -- set-up ------------------------------------------------------------------------

    def _prepare_directories(self) -> None:
        # Postfix and Dovecot processes run as postfix, dovecot, dovenull and mail: every
        # directory on the way must be traversable by them (mkdtemp makes 0700).
        self.directory.chmod(0o755)
        for path in (self.config_dir, self.queue_dir, self.dovecot_dir):
            path.mkdir(mode=0o755)
        postfix_uid, postfix_gid = _passwd_entry("postfix")
        self.data_dir.mkdir(mode=0o700)
        os.chown(self.data_dir, postfix_uid, postfix_gid)
        mail_uid, mail_gid = _passwd_entry(MAIL_ACCOUNT)
        self.mail_dir.mkdir(mode=0o755)
        os.chown(self.mail_dir, mail_uid, mail_gid)

    def _write_certificate(self) -> None:
        # Issued into the CA's directory, copied next to the configs; the key stays
        # root-only: both daemons read their keys as root before dropping privileges.
        cert = Path(self.ca.issue("postfix-mta", ("localhost", "127.0.0.1")))
        self.cert_file = self.config_dir / "server.pem"
        self.key_file = self.config_dir / "server.key"
        shutil.copyfile(cert, self.cert_file)
        shutil.copyfile(cert.with_suffix(".key"), self.key_file)
        self.cert_file.chmod(0o644)
        self.key_file.chmod(0o600)

    def _write_dovecot_config(self) -> None:
        mail_uid, mail_gid = _passwd_entry(MAIL_ACCOUNT)
        users = self.dovecot_dir / "users"
        users.write_text(
            "".join(
                f"{user}:{{PLAIN}}{password}:{mail_uid}:{mail_gid}::{self.mailbox(user)}::\n"
                for user, password in self.users.items()
            )
        )
        # Read by the auth process, which runs as the dovecot user.
        users.chmod(0o640)
        os.chown(users, 0, _passwd_entry("dovecot")[1])
        self.dovecot_conf.write_text(
            f"""\
# Private Dovecot for tests/support/mta_fixtures.py: SASL for Postfix, IMAPS on loopback.
base_dir = {self.dovecot_dir}/run
state_dir = {self.dovecot_dir}/state
instance_name = psicogest-test-{self.directory.name}
log_path = {self.dovecot_log_path}
info_log_path = {self.dovecot_log_path}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
# No 2 s pause after a wrong password: keeps the failure tests fast.
auth_failure_delay = 0
first_valid_uid = {mail_uid}
last_valid_uid = {mail_uid}
mail_location = maildir:~
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imap_port}
    ssl = yes
  }}
}}
# No growing per-IP penalty (2, 4, 8, 15 s) after failed logins either: every test connects
# from 127.0.0.1. (Dovecot's documented switch: the anvil penalty socket unusable.)
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {self.sasl_socket.name} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""
        )

    def _start_dovecot(self) -> None:
        self._run([DOVECOT, "-c", str(self.dovecot_conf)], what="dovecot")
        self._dovecot_started = True

    def _write_postfix_config(self) -> None:
        mail_uid, mail_gid = _passwd_entry(MAIL_ACCOUNT)
        vmailbox = self.config_dir / "vmailbox"
        vmailbox.write_text(
            "".join(
                f"{user} {self.mailbox(user).relative_to(self.mail_dir)}/\n" for user in self.users
            )
        )
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": f"mail.{self.domain}",
            "mydomain": self.domain,
            "myorigin": "$mydomain",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.1/32",
            # Local delivery only, into maildirs, for the listed users of the test domain.
            "mydestination": "",
            "local_transport": "error:local delivery is disabled on the test MTA",
            "alias_maps": "",
            "alias_database": "",
            "virtual_alias_maps": "",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_maps": f"texthash:{vmailbox}",
            "virtual_mailbox_base": str(self.mail_dir),
            "virtual_uid_maps": f"static:{mail_uid}",
            "virtual_gid_maps": f"static:{mail_gid}",
            "virtual_minimum_uid": str(mail_uid),
            "virtual_transport": "virtual",
            # Never relay: any other domain resolves to error(8), so smtpd refuses it at RCPT.
            "relayhost": "",
            "relay_domains": "",
            "transport_maps": "",
            "default_transport": NO_RELAY,
            "relay_transport": NO_RELAY,
            "smtpd_reject_unlisted_recipient": "yes",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": "permit_sasl_authenticated, reject",
            "smtputf8_enable": "yes",
            "smtpd_peername_lookup": "no",
            "smtpd_banner": "$myhostname ESMTP Postfix (PsicoGest test MTA)",
            "biff": "no",
            "append_dot_mydomain": "no",
            # TLS and SASL for every listener (all of them are in master.cf below).
            "smtpd_tls_cert_file": str(self.cert_file),
            "smtpd_tls_key_file": str(self.key_file),
            "smtpd_tls_loglevel": "1",
            "smtpd_tls_auth_only": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(self.sasl_socket),
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_tls_security_options": "noanonymous",
            # The log, in the temporary directory, with the client's commands.
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.directory),
            "debug_peer_list": "127.0.0.1",
            "debug_peer_level": "1",
        }
        (self.config_dir / "main.cf").write_text(
            "# Private Postfix for tests/support/mta_fixtures.py.\n"
            + "".join(f"{key} = {value}\n" for key, value in main.items())
        )
        smtpd_options = [
            "smtpd_tls_security_level=encrypt",
            "smtpd_sasl_auth_enable=yes",
            "smtpd_sasl_type=dovecot",
            f"smtpd_sasl_path={self.sasl_socket}",
            "smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
            "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
        ]
        listeners = [
            (self.submission_port, "submission", []),
            (self.smtps_port, "smtps", ["smtpd_tls_wrappermode=yes"]),
            (self.no8bitmime_port, "no8bitmime", ["smtpd_discard_ehlo_keywords=8bitmime"]),
            (self.accept_all_port, "acceptall", ["smtpd_reject_unlisted_recipient=no"]),
        ]
        lines = ["# service type  private unpriv  chroot  wakeup  maxproc command + args"]
        for port, name, extra in listeners:
            lines.append(f"{self.host}:{port} inet n - n - - smtpd")
            lines.extend(
                f"  -o {option}" for option in [f"syslog_name=postfix/{name}", *smtpd_options]
            )
            lines.extend(f"  -o {option}" for option in extra)
        lines += [
            "pickup    unix  n - n 60   1 pickup",
            "cleanup   unix  n - n -    0 cleanup",
            "qmgr      unix  n - n 300  1 qmgr",
            "tlsmgr    unix  - - n 1000? 1 tlsmgr",
            "rewrite   unix  - - n -    - trivial-rewrite",
            "bounce    unix  - - n -    0 bounce",
            "defer     unix  - - n -    0 bounce",
            "trace     unix  - - n -    0 bounce",
            "verify    unix  - - n -    1 verify",
            "flush     unix  n - n 1000? 0 flush",
            "proxymap  unix  - - n -    - proxymap",
            "showq     unix  n - n -    - showq",
            "error     unix  - - n -    - error",
            "retry     unix  - - n -    - error",
            "discard   unix  - - n -    - discard",
            "anvil     unix  - - n -    1 anvil",
            "scache    unix  - - n -    1 scache",
            "virtual   unix  - n n -    - virtual",
            "postlog   unix-dgram n - n - 1 postlogd",
        ]
        (self.config_dir / "master.cf").write_text("\n".join(lines) + "\n")

    def _start_postfix(self) -> None:
        # Postfix re-reads a configuration file modified in the current second until it is
        # older (against editors still writing it): ~2 s at every start-up. Backdate them.
        an_hour_ago = time.time() - 3600
        for path in self.config_dir.iterdir():
            os.utime(path, (an_hour_ago, an_hour_ago))
        self._run([POSTFIX, "-c", str(self.config_dir), "start"], what="postfix start")
        self._postfix_started = True

    def _wait_until_ready(self, *, timeout: float) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        checks = {
            "submission": (self.submission_port, None, b"220 "),
            "smtps": (self.smtps_port, context, b"220 "),
            "no8bitmime": (self.no8bitmime_port, None, b"220 "),
            "acceptall": (self.accept_all_port, None, b"220 "),
            "imaps": (self.imap_port, context, b"* OK"),
        }
        deadline = time.monotonic() + timeout
        pending = dict(checks)
        errors: dict[str, str] = {}
        while pending:
            for name, (port, tls, greeting) in list(pending.items()):
                try:
                    with socket.create_connection((self.host, port), timeout=2) as sock:
                        if tls is not None:
                            with tls.wrap_socket(sock, server_hostname="localhost") as wrapped:
                                banner = wrapped.recv(200)
                        else:
                            banner = sock.recv(200)
                    if banner.startswith(greeting):
                        del pending[name]
                    else:
                        errors[name] = f"unexpected greeting {banner!r}"
                except OSError as exc:
                    errors[name] = repr(exc)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(
                    "the test MTA did not start: "
                    + "; ".join(f"{name}: {errors.get(name)}" for name in pending)
                    + f"\n--- Postfix log:\n{self.log_text()[-4000:]}"
                    + f"\n--- Dovecot log:\n{self.dovecot_log_text()[-4000:]}"
                )
            if pending:
                time.sleep(0.05)
        self.clear_log()

    # -- helpers -----------------------------------------------------------------------

    def _run(
        self, command: list[str], *, what: str = "", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Output to a file, not a pipe: the daemons inherit it and would keep a pipe open.
        with tempfile.TemporaryFile(mode="w+") as output:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
            )
            output.seek(0)
            result.stdout = output.read()
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{what or command[0]} failed ({result.returncode}): {' '.join(command)}\n"
                f"{result.stdout}"
                f"\n--- Postfix log:\n{self.log_text()[-4000:]}"
                f"\n--- Dovecot log:\n{self.dovecot_log_text()[-4000:]}"
            )
        return result

    @staticmethod
    def _pid(path: Path, program: str) -> int | None:
        """The pid in a daemon's pid file, if that process is still ``program``."""
        try:
            pid = int(path.read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError, IndexError):
            return None
        return pid if os.path.basename(command.decode(errors="replace")) == program else None

    @staticmethod
    def _wait_for_exit(pid: int | None, timeout: float = 10.0) -> None:
        """Wait for a daemon's master process to exit; SIGKILL it after ``timeout``."""
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # "Z": exited, not yet reaped by init (the daemons detach from us).
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return
            except (OSError, IndexError):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="session")
def postfix_mta(local_ca: LocalCA) -> Iterator[PostfixMTA]:
    """A private Postfix + Dovecot on loopback for the whole session (see the module)."""
    for attempt in range(3):
        # Not tmp_path_factory: its directories are 0700 under a 0700 parent, and the
        # daemons' unprivileged processes must reach the queue, the sockets and the maildirs.
        directory = Path(tempfile.mkdtemp(prefix="psicogest-mta-"))
        mta = PostfixMTA(ca=local_ca, directory=directory)
        try:
            mta.start()
            break
        except RuntimeError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            # A free port taken by someone else in the meantime: try new ones.
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        yield mta
    finally:
        mta.stop()
        shutil.rmtree(directory, ignore_errors=True)
