"""Benchmark of the sending pipeline over the personal-SMTP channel.

1,000 invoices with a 40 KB PDF each are queued with ``queue_invoice_emails`` and sent by
real Celery worker processes (one worker, prefork pool of 1 and then 2 processes, on Redis)
to a local SMTP sink. In the same run, to the same sink, the very same messages go through a
plain ``smtplib`` loop on one connection: the ceiling. Sinks (``--sink``):

* ``smtp-sink`` (the default): Postfix's ``smtp-sink`` behind ``stunnel`` (implicit TLS, no
  AUTH; see ``bench/sinks.py``), which is not the bottleneck; the ceiling has
  ``TCP_NODELAY``. Targets: ≥ 0.8× the ceiling with one worker process, ≥ 1.5× with two.
* ``aiosmtpd``: the project's test server (STARTTLS and AUTH) in a process of its own; it is
  the bottleneck, kept to compare with earlier figures.

Printed: pipeline throughput (queue → every row ``sent``) per worker concurrency, SMTP
sessions opened (aiosmtpd only: smtp-sink counts nothing), SQL queries per delivery measured
in process for two batch sizes (must be constant), the ceiling and the ratios.

The preset's rate limit is lifted (``EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE``): the
benchmark measures the pipeline, not a provider's pace.

Run it like the report benchmark (a throw-away PostgreSQL and Redis)::

    bench/run.sh bench/send_batch.py [--invoices 1000] [--concurrency 1,2] [--sink aiosmtpd]
    # or, with services of your own (the database's bench rows are replaced):
    DATABASE_URL=postgres://user@host:port/db REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/send_batch.py
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psicogest.settings")
os.environ.setdefault("DJANGO_ENV", "development")
os.environ["EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE"] = "1000000"
os.environ.setdefault("EMAILSETTINGS_BATCH_SIZE", "50")

WORK = Path(os.environ.get("BENCH_WORK") or tempfile.mkdtemp(prefix="psicogest-send-bench-"))
os.environ["EMAILSETTINGS_SMTP_EXTRA_CA_FILE"] = str(WORK / "ca" / "ca.pem")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import QuerySet  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from devtools.smtpserver import LocalCA, SmtpTestServer  # noqa: E402
from emailsettings.covermail.message import build_message, message_bytes  # noqa: E402
from emailsettings.models import (  # noqa: E402
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    SmtpAccount,  # noqa: E402
)
from emailsettings.outbox.dispatch import Dispatcher  # noqa: E402
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails  # noqa: E402
from emailsettings.outbox.worker import send_batch  # noqa: E402
from psicogest.celery import app  # noqa: E402
from psicogest.invoicepdf import invoice_pdf_bytes  # noqa: E402
from psicogest.models import Invoice, Patient, Practitioner  # noqa: E402

BENCH_EMAIL = "invii@bench.test"
MAILBOX = "studio@bench.test"
PDF_SIZE = 40 * 1024


def pdf_of_40kb(number: str) -> bytes:
    """A real small PDF padded with an incompressible comment to 40 KB."""
    head = invoice_pdf_bytes(number=number, patient="Paziente", total=123)
    filler = base64.b64encode(os.urandom(PDF_SIZE)).decode()
    lines = "".join(f"%{filler[i : i + 76]}\n" for i in range(0, len(filler), 76))
    data = head + lines.encode()
    return data[:PDF_SIZE] if len(data) > PDF_SIZE else data


class StatsProcess:
    """A server in a process of its own, so that it does not share a core (and the GIL)
    with the clients it serves: it prints "ready", then answers ``stats`` on stdin with
    "connections messages"."""

    def __init__(self, command: list[str], *, what: str) -> None:
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{what} did not start")

    def stats(self) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        connections, messages = self.proc.stdout.readline().split()
        return int(connections), int(messages)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Sink(StatsProcess):
    """The aiosmtpd SMTP sink (:class:`StatsProcess`)."""

    def __init__(self, ca_dir: Path) -> None:
        from devtools.smtpserver import free_port

        self.port = free_port()
        super().__init__(
            [sys.executable, __file__, "--sink", str(ca_dir), str(self.port)],
            what="the SMTP sink",
        )


def run_sink(ca_dir: str, port: int) -> None:
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    server = SmtpTestServer(ca=LocalCA(Path(ca_dir)), tls="starttls", users=None, port=port)
    server.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "stats":
                count = len(server.messages)
                server.messages.clear()  # counted, not kept: 1,000 × 55 KB adds up
                server.received_total = getattr(server, "received_total", 0) + count
                print(server.connections, server.received_total, flush=True)
    finally:
        server.stop()


def remove_bench_rows(email: str = BENCH_EMAIL) -> None:
    Invoice.objects.filter(practitioner__email=email).delete()
    Practitioner.objects.filter(email=email).delete()


def prepare(
    count: int,
    server: Sink | SimpleNamespace,
    *,
    email: str = BENCH_EMAIL,
    security: str = "starttls",
    shared_pdf: bool = False,
) -> tuple[Practitioner, list[Invoice]]:
    """A practitioner ``email`` sending over personal SMTP to ``server.port`` on loopback
    (AUTH only with STARTTLS: the TLS sink has none), with ``count`` invoices of 40 KB
    (one PDF file for all of them when ``shared_pdf``: quicker to prepare, same messages)."""
    from decimal import Decimal

    remove_bench_rows(email)
    practitioner = Practitioner.objects.create_user(
        email, "password", title="Dott.ssa", first_name="Maria", last_name="Benchi"
    )
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    account = SmtpAccount(
        practitioner=practitioner,
        email=MAILBOX,
        preset="custom",
        host="127.0.0.1",
        port=server.port,
        security=security,
        username=MAILBOX if security == "starttls" else "",
    )
    account.set_password("bench")
    account.save()
    from django.core.files.storage import default_storage

    patients = Patient.objects.bulk_create(
        Patient(
            practitioner=practitioner,
            salutation="Gentile",
            first_name="Paziente",
            last_name=f"Numero{n}",
            email=f"paziente{n}@bench.test",
        )
        for n in range(count)
    )
    invoices = []
    path = ""
    for n, patient in enumerate(patients):
        number = f"{n + 1}/2026"
        if not (shared_pdf and path):
            path = default_storage.save(
                f"invoices/{practitioner.pk}/fattura-{n + 1}-2026.pdf",
                ContentFile(pdf_of_40kb(number)),
            )
        invoices.append(
            Invoice(
                practitioner=practitioner,
                patient=patient,
                number=number,
                issue_date="2026-11-02",
                due_date="2026-12-02",
                total=Decimal("80.00"),
                pdf=path,
            )
        )
    invoices = Invoice.objects.bulk_create(invoices)
    return practitioner, invoices


def start_worker(
    concurrency: int, *, env: dict[str, str] | None = None, name: str = "worker"
) -> subprocess.Popen[bytes]:
    """A Celery worker (prefork pool of ``concurrency`` processes) with ``env`` added to
    this process's environment; logs to ``WORK/<name>.log``."""
    log = WORK / f"{name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "psicogest",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("worker exited:\n" + log.read_text()[-3000:])
        # "ready." is logged at INFO; a WARNING-level worker says nothing: probe the DB.
        if "ready" in log.read_text(errors="replace") or time.monotonic() > deadline - 55:
            return proc
        time.sleep(0.2)
    raise SystemExit("worker did not start")


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, 15)
    worker.wait(timeout=60)


def wait_until_sent(rows: list[int] | QuerySet[Delivery], *, poll: float = 0.05) -> bool:
    """Until every row (ids, or a queryset of deliveries) is ``sent``; says so and returns
    ``False`` when some ended otherwise."""
    if isinstance(rows, list):
        rows = Delivery.objects.filter(pk__in=rows)
    while True:
        pending = rows.exclude(status=DeliveryStatus.SENT)
        if not pending.exists():
            return True
        if pending.exclude(status__in=(DeliveryStatus.QUEUED, DeliveryStatus.SENDING)).exists():
            print("Some deliveries did not go out:", set(pending.values_list("status", flat=True)))
            return False
        time.sleep(poll)


def purge_broker() -> None:
    """Forget the tasks left in the broker's queue by an earlier run."""
    with app.connection_for_write() as conn:
        # Every priority's list of the queue (kombu's Redis channel; not in its stub).
        conn.default_channel.queue_purge("celery")  # type: ignore[attr-defined]


def forget_dispatch_state(practitioners: Sequence[Practitioner]) -> None:
    """Empty slots and backlogs for ``practitioners`` and no reservation waiting, as after a
    clean start: each scenario starts so (only a crash leaves any behind)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for practitioner in practitioners:
        client.delete(
            f"emailsettings:slots:{practitioner.pk}", f"emailsettings:backlog:{practitioner.pk}"
        )
    client.delete(Dispatcher.WAITING_KEY)


def clean_up(emails: Sequence[str]) -> None:
    """The benchmark's rows of ``emails`` deleted, and its work directory unless BENCH_KEEP
    asks to keep the worker logs."""
    for email in emails:
        remove_bench_rows(email)
    if os.environ.get("BENCH_KEEP"):
        print(f"Worker logs kept in {WORK}")
    else:
        shutil.rmtree(WORK, ignore_errors=True)


def prepare_services(*, worker: bool = True) -> None:
    """What every benchmark checks and sets up first: the PostgreSQL (and, for a Celery
    worker, the Redis) that bench/run.sh starts, a media directory of its own, the schema."""
    if not str(settings.DATABASES["default"]["ENGINE"]).endswith("postgresql"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database (bench/run.sh does).")
    if worker and not settings.CELERY_BROKER_URL.startswith("redis"):
        raise SystemExit("Set REDIS_URL to a Redis server (bench/run.sh does).")
    settings.MEDIA_ROOT = str(WORK / "media")
    os.environ["DJANGO_MEDIA_ROOT"] = settings.MEDIA_ROOT
    call_command("migrate", verbosity=0)


def queries_per_delivery(practitioner: Practitioner) -> dict[int, float]:
    """SQL queries of send_batch, per delivery, for two batch sizes (in process)."""
    from psicogest.models import Patient

    result = {}
    for size in (10, 50):
        ids = []
        for n in range(size):
            patient = Patient.objects.create(
                practitioner=practitioner,
                first_name="Q",
                last_name=f"{size}-{n}",
                email=f"q{size}-{n}@bench.test",
            )
            invoice = Invoice.objects.create(
                practitioner=practitioner,
                patient=patient,
                number=f"Q{size}-{n}",
                issue_date="2026-11-02",
                total=1,
            )
            invoice.pdf.save(f"q{size}-{n}.pdf", ContentFile(pdf_of_40kb("Q")), save=True)
            # The worker is stopped by now: the published tasks wait in the queue unused.
            ids.append(queue_invoice_email(invoice).pk)
        with CaptureQueriesContext(connection) as captured:
            send_batch(delivery_ids=ids)
        sent = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENT).count()
        result[size] = len(captured.captured_queries) / max(sent, 1)
    return result


def ceiling(messages: list[tuple[str, bytes]], server: Sink) -> float:
    """Seconds for a plain smtplib loop on one connection, same sink, same messages."""
    context = ssl.create_default_context(cafile=os.environ["EMAILSETTINGS_SMTP_EXTRA_CA_FILE"])
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.starttls(context=context)
        client.login(MAILBOX, "bench")
        for recipient, data in messages:
            client.sendmail(MAILBOX, [recipient], data)
    return time.perf_counter() - started


def pipeline_run(
    invoices: list[Invoice], concurrency: int, stats: Callable[[], tuple[int, int]] | None
) -> dict[str, float]:
    """Queue every invoice (one transaction) with a worker of ``concurrency`` processes
    running, and time it until every row is ``sent``. The one practitioner gets as many
    worker slots as there are processes (``EMAILSETTINGS_MAILBOX_WORKER_SLOTS``, 1 by
    default, would keep it to one batch, one process, at a time: see bench/fairness.py)."""
    Delivery.objects.filter(invoice__in=invoices).delete()
    settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = concurrency
    worker = start_worker(
        concurrency,
        env={"EMAILSETTINGS_MAILBOX_WORKER_SLOTS": str(concurrency)},
        name=f"worker-{concurrency}",
    )
    try:
        time.sleep(3)  # the worker's pool is up before the clock starts
        connections_before, _received = stats() if stats else (0, 0)
        started = time.perf_counter()
        deliveries = queue_invoice_emails(invoices)
        queued = time.perf_counter() - started
        wait_until_sent([d.pk for d in deliveries])
        elapsed = time.perf_counter() - started
        connections_after, _received = stats() if stats else (0, 0)
    finally:
        stop_worker(worker)
    return {
        "queued": queued,
        "elapsed": elapsed,
        "rate": len(invoices) / elapsed,
        "sessions": connections_after - connections_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument(
        "--concurrency", default="1,2", help="worker processes, one run each (e.g. 1,2)"
    )
    parser.add_argument("--sink", choices=("smtp-sink", "aiosmtpd"), default="smtp-sink")
    args = parser.parse_args()
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    prepare_services()

    ca = LocalCA.create(WORK / "ca")
    purge_broker()
    with contextlib.ExitStack() as stack:
        if args.sink == "smtp-sink":
            import sinks

            sinks.issue_certificate(ca)
            server: Sink | SimpleNamespace = SimpleNamespace(
                port=stack.enter_context(sinks.tls_sink(ca, address="127.0.0.1"))
            )
            stats = None
            security, sink_name = "ssl", "smtp-sink behind stunnel (implicit TLS, no AUTH)"
        else:
            server = Sink(ca.directory)
            stack.callback(server.stop)
            stats = server.stats
            security, sink_name = "starttls", "aiosmtpd (STARTTLS + AUTH), own process"
        stack.callback(remove_bench_rows)
        print(f"Preparing {args.invoices} invoices with 40 KB PDFs…", flush=True)
        practitioner, invoices = prepare(args.invoices, server, security=security)
        runs = {n: pipeline_run(invoices, n, stats) for n in concurrencies}
        per_delivery = queries_per_delivery(practitioner)

        messages = [
            (d.recipient, message_bytes(build_message(d)))
            for d in Delivery.objects.filter(invoice__in=invoices).select_related("invoice")
        ]
        if args.sink == "smtp-sink":
            ceiling_seconds = sinks.smtplib_seconds(
                "127.0.0.1", server.port, messages, from_addr=MAILBOX
            )
            ceiling_name = "smtplib + TCP_NODELAY, 1 connection"
        else:
            ceiling_seconds = ceiling(messages, server)
            ceiling_name = "smtplib, 1 connection (STARTTLS)"
        ceiling_rate = len(messages) / ceiling_seconds
        batches = -(-args.invoices // int(os.environ["EMAILSETTINGS_BATCH_SIZE"]))
        targets = {1: "target ≥ 0.8×", 2: "target ≥ 1.5×"}
        print()
        print(f"{'sink':48}{sink_name}")
        print(f"{'invoices':48}{args.invoices} (PDF 40 KB each), {batches} batches")
        print(f"{'ceiling: ' + ceiling_name:48}{ceiling_seconds:.2f} s, {ceiling_rate:.1f} msg/s")
        for n, run in runs.items():
            plural = "es" if n > 1 else ""
            label = f"pipeline, {n} worker process{plural}, {n} slot(s)"
            sessions = f", {run['sessions']} SMTP sessions" if stats else ""
            print(
                f"{label:48}queue → all sent {run['elapsed']:.2f} s, {run['rate']:.1f} msg/s"
                f" = {run['rate'] / ceiling_rate:.2f}× ceiling"
                f" ({targets.get(n, 'no target')}){sessions}; queueing {run['queued']:.2f} s"
            )
        for size, count in per_delivery.items():
            print(f"{'SQL queries per delivery':48}{count:.1f} (batch of {size}, in process)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sink"]:
        run_sink(sys.argv[2], int(sys.argv[3]))
    else:
        main()
