"""Side-by-side benchmark against a peer: the product, django-post-office and plain Django.

The same N invoices (1,000 by default: a 40 KB invoice PDF each, about 58 KB on the wire, as
``bench/send_batch.py`` builds them) go to the same sink — Postfix's ``smtp-sink`` behind
``stunnel``, implicit TLS with the project's test CA (``bench/sinks.py``) — one process each,
in interleaved rounds (each system once a round, the order rotating), through:

* **the product**: queued with ``queue_invoice_emails``, then sent in this process by the
  worker's task body (``emailsettings.send_deliveries``: ``send_batch`` and what follows a
  batch) over the personal-SMTP channel, one batch of ``EMAILSETTINGS_BATCH_SIZE`` (50) after
  the other, as one worker process runs them (without Celery's own overhead: the task is
  called, not consumed from the broker);
* **django-post-office** (latest 3.x, installed by this benchmark into a scratch virtualenv
  in a temporary directory, with the project's Django series), in a subprocess with its own
  settings module and database on the same PostgreSQL server: ``mail.send`` with the PDF
  attached for each message (one transaction), then its ``send_queued_mail`` command (one
  process; its stock five sending threads, each with its own SMTP connection
  (``--post-office-threads``); ``BATCH_SIZE`` 50 like the product's, its default being
  100) — stock (Django's SMTP backend), then with ``TCP_NODELAY`` on the backend's socket
  (``bench/peer_client.py``);
* **plain Django**: ``EmailMultiAlternatives`` through Django's SMTP backend with
  ``TCP_NODELAY``, ``send_messages`` one message at a time on one connection, no database:
  the floor.

Printed for each: msg/s, CPU ms per message (the client process — ``time.process_time``,
every thread — plus PostgreSQL's server, the utime+stime of its processes from ``/proc``
before and after, exited backends included through the postmaster's children counters),
SQL statements per message (counted on both sides by a Django execute wrapper: what went
through Django's cursor, BEGIN/COMMIT not included), commits per message (the COMMIT records
the server wrote to its WAL, read back with ``pg_walinspect``: transactions that wrote
something, read-only ones excluded), WAL bytes per message (``pg_wal_lsn_diff``), and what
each keeps after a crash. The medians of the rounds, then the issue's targets beside them.

``--synchronous-commit on|off|both`` sets it for the two benchmark databases
(``ALTER DATABASE … SET``, which beats the server's command line; with ``both`` each round
runs every system under each setting); the server's ``fsync``
and ``synchronous_commit`` are printed with the figures (``bench/run.sh`` starts PostgreSQL
with ``fsync=off``: a commit then costs no disk flush, so commits per message is the figure
that carries over to a real server).

Run: ``bench/run.sh bench/peer.py [--messages 1000] [--rounds 3] [--synchronous-commit both]
[--post-office-threads 5] [--peer-venv DIR]`` (``--peer-venv`` keeps the scratch virtualenv
there for the next run). About six minutes with the defaults on a 2-core machine.
Loopback only. Figures only, with their targets; never a timed assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psycopg  # noqa: E402
import send_batch as base  # noqa: E402  (Django set up, the 40 KB invoices, bench rows)
from django.conf import settings  # noqa: E402
from django.core.files.storage import default_storage  # noqa: E402
from django.db import connection  # noqa: E402
from peer_client import django_message  # noqa: E402
from sinks import issue_certificate, tls_sink  # noqa: E402

from devtools.smtpserver import LocalCA  # noqa: E402
from emailsettings import conf  # noqa: E402
from emailsettings.covermail.message import (  # noqa: E402
    attachment_name,
    build_message,
    message_bytes,
)
from emailsettings.models import Delivery, DeliveryStatus  # noqa: E402
from emailsettings.outbox.queueing import queue_invoice_emails  # noqa: E402
from emailsettings.tasks import send_deliveries_task  # noqa: E402

CLIENT = Path(__file__).with_name("peer_client.py")
PEER_DATABASE = "bench_peer_postoffice"
PEER_PACKAGES = ("django-post-office>=3,<4", "Django>=5.2,<5.3", "psycopg[binary]>=3.2")
DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
NODELAY_SMTP = "peer_client.NoDelayEmailBackend"
PRODUCT, PO_STOCK, PO_NODELAY, PLAIN = (
    "product",
    "post-office command, stock",
    "post-office command + TCP_NODELAY",
    "plain Django + TCP_NODELAY",
)
SYSTEMS = (PRODUCT, PO_STOCK, PO_NODELAY, PLAIN)
KEEPS = {
    PRODUCT: "each outcome committed before the next message; after a crash at most one"
    " message is 'maybe sent' (shown, never re-sent silently)",
    PO_STOCK: "statuses written once a batch (50), after it is sent; after a crash up to 49"
    " accepted messages are still 'queued' and go out again",
    PO_NODELAY: "as stock",
    PLAIN: "nothing: no queue, no record, no retry",
}
SETTINGS_MODULE = """\
import os

SECRET_KEY = "bench-peer"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["post_office"]
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}}]
DATABASES = {{"default": {database!r}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EMAIL_BACKEND = os.environ.get("PEER_EMAIL_BACKEND", {default_backend!r})
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {port}
EMAIL_USE_SSL = True
EMAIL_TIMEOUT = 60
MEDIA_ROOT = {media!r}
POST_OFFICE = {{"BATCH_SIZE": 50, "THREADS_PER_PROCESS": {threads}}}
"""


# --- PostgreSQL: CPU, WAL, commits ---------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat from the state on (field 3), the command name skipped."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


@dataclass
class Snapshot:
    cpu_seconds: float
    lsn: str


class Server:
    """The PostgreSQL server the benchmark runs on, watched through a connection of its own
    (read-only statements: they write no commit record)."""

    def __init__(self, url: str) -> None:
        self.monitor = psycopg.connect(url, autocommit=True)
        self.ticks = os.sysconf("SC_CLK_TCK")
        backend = self.value("SELECT pg_backend_pid()")
        self.postmaster = int(_stat(int(backend))[1])
        self.monitor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.monitor.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def cpu_seconds(self) -> float:
        """utime+stime of the postmaster and its live children, plus its exited (reaped)
        children's: every backend's CPU, those that came and went included."""
        fields = _stat(self.postmaster)
        ticks = sum(int(value) for value in fields[11:15])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                child = _stat(int(entry.name))
                if int(child[1]) == self.postmaster:
                    ticks += int(child[11]) + int(child[12])
        return ticks / self.ticks

    def snapshot(self) -> Snapshot:
        # The insert position: with synchronous_commit off the last commits may not be
        # written yet (pg_current_wal_lsn() is the write position).
        return Snapshot(self.cpu_seconds(), str(self.value("SELECT pg_current_wal_insert_lsn()")))

    def wal_bytes(self, start: Snapshot, end: Snapshot) -> int:
        return int(self.value("SELECT pg_wal_lsn_diff(%s, %s)", (end.lsn, start.lsn)))

    def commits(self, start: Snapshot, end: Snapshot) -> int | None:
        """COMMIT records in the WAL between the two snapshots (None when the WAL is gone)."""
        if start.lsn == end.lsn:
            return 0
        deadline = time.monotonic() + 10
        while self.value("SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), %s)", (end.lsn,)) < 0:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        try:
            return int(
                self.value(
                    "SELECT coalesce(sum(count), 0) FROM pg_get_wal_stats(%s, %s, true)"
                    ' WHERE "resource_manager/record_type" = %s',
                    (start.lsn, end.lsn, "Transaction/COMMIT"),
                )
            )
        except psycopg.Error:
            return None

    def settings_line(self) -> str:
        names = ("fsync", "synchronous_commit", "full_page_writes", "wal_level")
        values = ", ".join(f"{name}={self.value(f'SHOW {name}')}" for name in names)
        return f"PostgreSQL {self.value('SHOW server_version')}: {values} (server-wide)"

    def set_synchronous_commit(self, database: str, value: str) -> None:
        self.monitor.execute(f'ALTER DATABASE "{database}" SET synchronous_commit TO {value}')

    def reset_synchronous_commit(self, database: str) -> None:
        self.monitor.execute(f'ALTER DATABASE "{database}" RESET synchronous_commit')


# --- one run of one system -------------------------------------------------------------------


@dataclass
class Run:
    """One system's run: client CPU and wall seconds per phase, and the server's deltas."""

    system: str
    messages: int
    sent: int = 0
    send_wall: float = 0.0
    total_wall: float = 0.0
    client_cpu: dict[str, float] = field(default_factory=dict)
    pg_cpu: float = 0.0
    statements: dict[str, int] = field(default_factory=dict)
    commits: dict[str, int | None] = field(default_factory=dict)
    wal: int = 0
    synchronous_commit: str = ""

    def per_message(self, value: float) -> float:
        return value / max(self.sent, 1)


def account(run: Run, server: Server, snaps: list[Snapshot], phases: tuple[str, ...]) -> None:
    """The server's side of a run from its snapshots, one more than ``phases``."""
    run.pg_cpu = snaps[-1].cpu_seconds - snaps[0].cpu_seconds
    run.wal = server.wal_bytes(snaps[0], snaps[-1])
    for phase, start, end in zip(phases, snaps[:-1], snaps[1:], strict=True):
        run.commits[phase] = server.commits(start, end)


class Counter:
    """An execute wrapper counting the statements this process runs through Django."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.total += 1
        return execute(sql, params, many, context)


def product_run(practitioner: base.Practitioner, invoices: list, server: Server) -> Run:
    """Queue every invoice, then run the worker's task body batch after batch."""
    Delivery.objects.filter(practitioner=practitioner).delete()
    # The deleted rows' cleanup now, not by autovacuum in the middle of the measurement.
    server.monitor.execute("VACUUM ANALYZE")
    base.purge_broker()
    connection.close()  # a new session takes the database's synchronous_commit
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        setting = str(cursor.fetchone()[0])
    run = Run(PRODUCT, len(invoices), synchronous_commit=setting)
    counter = Counter()
    batch = conf.batch_size()
    with connection.execute_wrapper(counter):
        snaps = [server.snapshot()]
        cpu, wall = time.process_time(), time.perf_counter()
        ids = [delivery.pk for delivery in queue_invoice_emails(invoices)]
        run.client_cpu["queue"], queue_wall = time.process_time() - cpu, time.perf_counter() - wall
        run.statements["queue"] = counter.total
        snaps.append(server.snapshot())
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, len(ids), batch):
            send_deliveries_task(ids[start : start + batch])
        run.client_cpu["send"], run.send_wall = (
            time.process_time() - cpu,
            time.perf_counter() - wall,
        )
        snaps.append(server.snapshot())
    run.total_wall = queue_wall + run.send_wall
    run.statements["send"] = counter.total - run.statements["queue"]
    run.sent = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENT).count()
    account(run, server, snaps, ("queue", "send"))
    return run


def peer_run(system: str, *, python: Path, spec: Path, env: dict[str, str], server: Server) -> Run:
    """One run of ``bench/peer_client.py`` in the scratch virtualenv, its phases timed by the
    client itself and the server read between them."""
    mode = "plain" if system == PLAIN else "postoffice"
    backend = DJANGO_SMTP if system == PO_STOCK else NODELAY_SMTP
    log = Path(env["PEER_WORK"]) / "client.log"
    proc = subprocess.Popen(
        [str(python), str(CLIENT), mode, str(spec)],
        env=dict(env, PEER_EMAIL_BACKEND=backend),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def answer() -> dict[str, Any]:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            proc.wait(timeout=30)
            raise SystemExit(
                f"{system}: the client stopped; see its log:\n{log.read_text()[-3000:]}"
            )
        return dict(json.loads(line))

    def go() -> None:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()

    ready = answer()
    run = Run(system, 0, synchronous_commit=ready["synchronous_commit"])
    snaps = [server.snapshot()]
    phases = ("send",) if mode == "plain" else ("queue", "send")
    for phase in phases:
        go()
        figures = answer()
        snaps.append(server.snapshot())
        run.client_cpu[phase] = figures["cpu"]
        run.statements[phase] = int(figures["statements"])
        run.total_wall += figures["wall"]
        if phase == "send":
            run.send_wall = figures["wall"]
            run.sent = run.messages = int(figures["sent"])
    go()
    proc.wait(timeout=60)
    account(run, server, snaps, phases)
    return run


# --- setting up ------------------------------------------------------------------------------


def scratch_virtualenv(directory: Path) -> Path:
    """A virtualenv with django-post-office (latest 3.x), Django 5.2 and psycopg; reused
    when ``directory`` already has one."""
    python = directory / "bin" / "python"
    if not python.exists():
        print(f"Installing {', '.join(PEER_PACKAGES)} into a scratch virtualenv…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            + list(PEER_PACKAGES),
            check=True,
        )
    return python


def installed(python: Path, *names: str) -> str:
    code = (
        "import importlib.metadata as m, sys;"
        "print(', '.join(n + ' ' + m.version(n) for n in sys.argv[1:]))"
    )
    return subprocess.run(
        [str(python), "-c", code, *names], check=True, capture_output=True, text=True
    ).stdout.strip()


def peer_database(server: Server) -> dict[str, Any]:
    """A fresh database for post-office on the product's server; Django's settings for it."""
    server.monitor.execute(f'DROP DATABASE IF EXISTS "{PEER_DATABASE}"')
    server.monitor.execute(f'CREATE DATABASE "{PEER_DATABASE}"')
    own = settings.DATABASES["default"]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": PEER_DATABASE,
        "HOST": own.get("HOST") or "127.0.0.1",
        "PORT": str(own.get("PORT") or ""),
        "USER": own.get("USER") or "",
        "PASSWORD": own.get("PASSWORD") or "",
    }


def write_spec(deliveries: list[Delivery], path: Path) -> None:
    """The product's messages as the peers get them: same recipient, From, Reply-To,
    subject, text and HTML parts, and the invoice's own PDF file."""
    messages = [
        {
            "recipient": d.recipient,
            "from": d.from_header,
            "reply_to": d.reply_to,
            "subject": d.subject,
            "text": d.body_text,
            "html": d.body_html,
            "pdf": default_storage.path(d.invoice.pdf.name),
            "filename": attachment_name(d.invoice.number),
        }
        for d in deliveries
    ]
    path.write_text(json.dumps({"messages": messages}))


def wire_sizes(delivery: Delivery, item: dict[str, str]) -> tuple[int, int]:
    """Bytes of one message as the product and as Django (the peers) build it."""
    product = len(message_bytes(build_message(delivery)))
    return product, len(django_message(item).message().as_bytes())


# --- printing --------------------------------------------------------------------------------


def median(runs: list[Run], value: Callable[[Run], float | None]) -> float | None:
    values = [v for v in (value(run) for run in runs) if v is not None]
    return statistics.median(values) if values else None


def pair(queue: float | None, send: float | None, *, digits: int = 2) -> str:
    """``queue+send`` (``send`` alone when nothing was queued), or n/a."""
    if queue is None or send is None:
        return "n/a"
    return f"{queue:.{digits}f}+{send:.{digits}f}" if queue else f"{send:.{digits}f}"


@dataclass
class Row:
    """One system's medians over the rounds, per message where it says so."""

    system: str
    rate: float
    rate_total: float
    cpu_queue: float
    cpu_send: float
    cpu_pg: float
    statements: tuple[float | None, float | None]
    commits: tuple[float | None, float | None]
    wal: float

    @property
    def cpu_total(self) -> float:
        return self.cpu_queue + self.cpu_send + self.cpu_pg


def summarise(system: str, runs: list[Run]) -> Row:
    def ms(phase: str) -> Callable[[Run], float]:
        return lambda run: 1000 * run.per_message(run.client_cpu.get(phase, 0.0))

    def per_message(figures: str, phase: str) -> Callable[[Run], float | None]:
        def value(run: Run) -> float | None:
            count = getattr(run, figures).get(phase, 0)
            return None if count is None else run.per_message(count)

        return value

    return Row(
        system=system,
        rate=median(runs, lambda r: r.sent / r.send_wall) or 0.0,
        rate_total=median(runs, lambda r: r.sent / r.total_wall) or 0.0,
        cpu_queue=median(runs, ms("queue")) or 0.0,
        cpu_send=median(runs, ms("send")) or 0.0,
        cpu_pg=median(runs, lambda r: 1000 * r.per_message(r.pg_cpu)) or 0.0,
        statements=(
            median(runs, per_message("statements", "queue")),
            median(runs, per_message("statements", "send")),
        ),
        commits=(
            median(runs, per_message("commits", "queue")),
            median(runs, per_message("commits", "send")),
        ),
        wal=median(runs, lambda r: r.per_message(r.wal)) or 0.0,
    )


def print_round(run: Run) -> None:
    row = summarise(run.system, [run])
    print(
        f"  {run.system:36}{run.sent:6} sent {row.rate:7.1f} msg/s, CPU {row.cpu_total:5.1f}"
        f" ms/msg (PostgreSQL {row.cpu_pg:4.1f}), statements {pair(*row.statements)},"
        f" commits {pair(*row.commits, digits=3)}, WAL {row.wal / 1024:4.1f} KB a message",
        flush=True,
    )


def print_table(rows: list[Row], *, messages: int, rounds: int, setting: str) -> None:
    print(
        f"\nMedians of {rounds} round(s), {messages} messages each, synchronous_commit={setting}"
        " (the benchmark databases); per message, queue+send where both:"
    )
    print(
        f"  {'system':36}{'msg/s':>7}{'w. queue':>9}  {'CPU ms: queue':>13}{'send':>6}{'PG':>6}"
        f"{'total':>7}  {'statements':>11}{'commits':>13}{'WAL KB':>7}"
    )
    for row in rows:
        print(
            f"  {row.system:36}{row.rate:7.1f}{row.rate_total:9.1f}  {row.cpu_queue:13.1f}"
            f"{row.cpu_send:6.1f}{row.cpu_pg:6.1f}{row.cpu_total:7.1f}"
            f"  {pair(*row.statements):>11}{pair(*row.commits, digits=3):>13}{row.wal / 1024:7.1f}"
        )
    print("  what each keeps:")
    for row in rows:
        print(f"    {row.system:36}{KEEPS[row.system]}")
    by = {row.system: row for row in rows}
    product, peer = by[PRODUCT], by[PO_NODELAY]
    print("  the issue's targets (figures, not assertions):")
    print(
        f"    msg/s: product {product.rate:.1f} against post-office's command + TCP_NODELAY"
        f" {peer.rate:.1f}: {product.rate / peer.rate:.2f}× (queueing included:"
        f" {product.rate_total / peer.rate_total:.2f}×)"
    )
    verdict = "met" if product.cpu_total <= peer.cpu_total else "not met"
    print(
        f"    CPU a message, client + PostgreSQL: product {product.cpu_total:.1f} ms against"
        f" post-office's command path {peer.cpu_total:.1f} ms:"
        f" {product.cpu_total / peer.cpu_total:.2f}× (target ≤ 1.00× with each outcome durable"
        f" before the next message: {verdict})"
    )


# --- main ------------------------------------------------------------------------------------


def measure(
    choices: tuple[str, ...],
    rounds: int,
    server: Server,
    run_system: Callable[[str], Run],
) -> dict[str, list[Row]]:
    """``rounds`` rounds; in each, every setting of ``choices`` (their order alternating) and
    under it every system once, the systems' order rotating: a machine whose load moves
    moves every column alike."""
    runs: dict[tuple[str, str], list[Run]] = {}
    for number in range(rounds):
        shift = number % len(SYSTEMS)
        order = SYSTEMS[shift:] + SYSTEMS[:shift]
        for setting in choices if number % 2 == 0 else choices[::-1]:
            for database in (str(settings.DATABASES["default"]["NAME"]), PEER_DATABASE):
                server.set_synchronous_commit(database, setting)
            print(f"\nRound {number + 1}/{rounds}, synchronous_commit={setting}:", flush=True)
            for system in order:
                run = run_system(system)
                print_round(run)
                runs.setdefault((setting, system), []).append(run)
    return {
        setting: [summarise(system, runs[(setting, system)]) for system in SYSTEMS]
        for setting in choices
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synchronous-commit", choices=("on", "off", "both"), default="both")
    parser.add_argument(
        "--post-office-threads",
        type=int,
        default=5,
        help="post-office's THREADS_PER_PROCESS (5, its default: one SMTP connection each)",
    )
    parser.add_argument(
        "--peer-venv", help="the scratch virtualenv's directory, kept (default: a temporary one)"
    )
    args = parser.parse_args()
    base.prepare_services()
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = True
    work = Path(tempfile.mkdtemp(prefix="psicogest-peer-"))
    server = Server(os.environ["DATABASE_URL"])
    own_database = str(settings.DATABASES["default"]["NAME"])
    try:
        venv_dir = Path(args.peer_venv) if args.peer_venv else work / "venv"
        python = scratch_virtualenv(venv_dir)
        versions = installed(python, "django-post-office", "Django")
        ca = LocalCA.create(base.WORK / "ca")
        issue_certificate(ca)
        with tls_sink(ca, address="127.0.0.1") as port:
            print(f"Preparing {args.messages} invoices with 40 KB PDFs…", flush=True)
            practitioner, invoices = base.prepare(
                args.messages, SimpleNamespace(port=port), security="ssl"
            )
            deliveries = list(queue_invoice_emails(invoices))
            spec = work / "messages.json"
            write_spec(deliveries, spec)
            sizes = wire_sizes(deliveries[0], json.loads(spec.read_text())["messages"][0])
            settings_dir = work / "settings"
            settings_dir.mkdir()
            (settings_dir / "peer_settings.py").write_text(
                SETTINGS_MODULE.format(
                    database=peer_database(server),
                    default_backend=DJANGO_SMTP,
                    port=port,
                    media=str(work / "media"),
                    threads=args.post_office_threads,
                )
            )
            env = dict(
                os.environ,
                DJANGO_SETTINGS_MODULE="peer_settings",
                PYTHONPATH=os.pathsep.join((str(settings_dir), str(CLIENT.parent))),
                SSL_CERT_FILE=ca.ca_file,
                PEER_WORK=str(work),
            )
            subprocess.run([str(python), str(CLIENT), "setup", str(spec)], env=env, check=True)

            def run_system(system: str) -> Run:
                if system == PRODUCT:
                    return product_run(practitioner, invoices, server)
                return peer_run(system, python=python, spec=spec, env=env, server=server)

            settings_line = server.settings_line()
            choices = (
                ("off", "on") if args.synchronous_commit == "both" else (args.synchronous_commit,)
            )
            tables = measure(choices, args.rounds, server, run_system)
        print(f"\n{settings_line}; each table below says the benchmark databases' own")
        print(
            f"peer: {versions} (scratch virtualenv), BATCH_SIZE 50,"
            f" THREADS_PER_PROCESS {args.post_office_threads}; {os.cpu_count()} cores"
        )
        print(
            f"messages: {args.messages}, {sizes[0] / 1024:.1f} KB on the wire (product),"
            f" {sizes[1] / 1024:.1f} KB (Django's message, the peers), to smtp-sink behind"
            " stunnel (implicit TLS) on 127.0.0.1"
        )
        for setting, rows in tables.items():
            print_table(rows, messages=args.messages, rounds=args.rounds, setting=setting)
    finally:
        for database in (own_database, PEER_DATABASE):
            with contextlib.suppress(psycopg.Error):
                server.reset_synchronous_commit(database)
        with contextlib.suppress(psycopg.Error):
            server.monitor.execute(f'DROP DATABASE IF EXISTS "{PEER_DATABASE}" WITH (FORCE)')
        base.remove_bench_rows()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(base.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
