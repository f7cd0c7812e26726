"""The peers' side of ``bench/peer.py``: django-post-office and plain Django, measured.

Run by ``bench/peer.py`` with the Python of the scratch virtualenv it makes (Django and
django-post-office from the package registry, nothing of the project), with its own
settings module (``DJANGO_SETTINGS_MODULE``, written by ``bench/peer.py``). Modes:

* ``setup``: migrate post-office's tables into its database, then exit;
* ``postoffice``: queue the messages of the spec with ``post_office.mail.send`` (each with
  its PDF, as post-office stores it: a file and an ``Attachment`` row per mail) in one
  transaction, then send them with the ``send_queued_mail`` management command;
* ``plain``: send the same messages with ``EmailMultiAlternatives`` through Django's SMTP
  backend on one connection, ``send_messages`` one message at a time, no database.

Each phase waits for ``go`` on stdin (so that ``bench/peer.py`` can read PostgreSQL's CPU and
WAL position while this process's connection is still open) and prints one JSON line: the
process's CPU and wall seconds, the SQL statements it ran through Django's cursor (counted by
an execute wrapper; BEGIN/COMMIT are not statements there), and what it sent.

:class:`NoDelayEmailBackend` is Django's SMTP backend with ``TCP_NODELAY`` on its socket, the
one change that removes the 40 ms Nagle + delayed-ACK stall per message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend

TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)


class NoDelayEmailBackend(EmailBackend):
    """Django's SMTP backend with ``TCP_NODELAY`` set on the socket once it is open."""

    def open(self) -> bool | None:
        opened = super().open()
        if self.connection is not None and self.connection.sock is not None:
            self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return opened


def django_message(item: dict[str, str], *, connection: Any = None) -> EmailMultiAlternatives:
    """One invoice mail of the spec as the peers build it: Django's message with the text,
    the HTML and the PDF (bench/peer.py measures its size on the wire with the same)."""
    message = EmailMultiAlternatives(
        subject=item["subject"],
        body=item["text"],
        from_email=item["from"],
        to=[item["recipient"]],
        reply_to=[item["reply_to"]] if item["reply_to"] else [],
        connection=connection,
    )
    message.attach_alternative(item["html"], "text/html")
    message.attach(item["filename"], Path(item["pdf"]).read_bytes(), "application/pdf")
    return message


class StatementCounter:
    """An execute wrapper counting the statements Django runs on a connection."""

    def __init__(self) -> None:
        self.total = 0
        self.transaction_control = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.total += 1
        if TRANSACTION_CONTROL.match(sql):
            self.transaction_control += 1
        return execute(sql, params, many, context)


@contextmanager
def measured(counter: StatementCounter | None = None) -> Iterator[dict[str, float]]:
    """CPU (the whole process, every thread) and wall seconds of the block, and the
    statements ``counter`` saw in it."""
    figures: dict[str, float] = {}
    before = counter.total if counter else 0
    control = counter.transaction_control if counter else 0
    cpu, wall = time.process_time(), time.perf_counter()
    yield figures
    figures["cpu"] = time.process_time() - cpu
    figures["wall"] = time.perf_counter() - wall
    figures["statements"] = (counter.total - before) if counter else 0
    figures["transaction_control"] = (counter.transaction_control - control) if counter else 0


def wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("bench/peer.py went away")


def report(figures: dict[str, Any]) -> None:
    print(json.dumps(figures), flush=True)


def synchronous_commit() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


def load_spec(path: str) -> list[dict[str, str]]:
    return list(json.loads(Path(path).read_text())["messages"])


def postoffice(spec: list[dict[str, str]], *, media_root: Path, lockfile: Path) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction
    from post_office import mail
    from post_office.models import STATUS, Attachment, Email, Log

    # A clean slate (not measured): the previous run's rows and attachment files.
    Log.objects.all().delete()
    Attachment.objects.all().delete()
    Email.objects.all().delete()
    shutil.rmtree(media_root, ignore_errors=True)
    # The deleted rows' cleanup now, not by autovacuum in the middle of the measurement.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    counter = StatementCounter()
    setting = synchronous_commit()
    report({"ready": True, "synchronous_commit": setting})
    with connection.execute_wrapper(counter):
        wait_for_go()
        with measured(counter) as queued, transaction.atomic():
            for item in spec:
                mail.send(
                    recipients=[item["recipient"]],
                    sender=item["from"],
                    subject=item["subject"],
                    message=item["text"],
                    html_message=item["html"],
                    headers={"Reply-To": item["reply_to"]} if item["reply_to"] else None,
                    attachments={
                        item["filename"]: {"file": item["pdf"], "mimetype": "application/pdf"}
                    },
                )
        report({"phase": "queue", **queued})
        wait_for_go()
        with measured(counter) as sent:
            call_command("send_queued_mail", lockfile=str(lockfile))
        sent["sent"] = Email.objects.filter(status=STATUS.sent).count()
        sent["not_sent"] = Email.objects.exclude(status=STATUS.sent).count()
        connection.close()
    report({"phase": "send", **sent})
    wait_for_go()


def plain(spec: list[dict[str, str]]) -> None:
    report({"ready": True, "synchronous_commit": ""})
    wait_for_go()
    with measured() as sent:
        smtp = get_connection("peer_client.NoDelayEmailBackend")
        smtp.open()
        try:
            for item in spec:
                smtp.send_messages([django_message(item, connection=smtp)])
        finally:
            smtp.close()
    sent["sent"] = len(spec)
    report({"phase": "send", **sent})
    wait_for_go()


def main(argv: list[str]) -> None:
    mode, spec_path = argv[0], argv[1]
    import django

    django.setup()
    if mode == "setup":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return
    from django.conf import settings

    spec = load_spec(spec_path)
    if mode == "postoffice":
        postoffice(
            spec,
            media_root=Path(settings.MEDIA_ROOT),
            lockfile=Path(os.environ["PEER_WORK"]) / "post_office",
        )
    elif mode == "plain":
        plain(spec)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
