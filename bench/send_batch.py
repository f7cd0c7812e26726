"""Benchmark of the sending pipeline over the personal-SMTP channel.

1,000 invoices with a 40 KB PDF each are queued with ``queue_invoice_emails`` and sent by a
real Celery worker (on Redis) to a local SMTP sink (aiosmtpd with STARTTLS and AUTH, the
same server the tests use; Postfix's ``smtp-sink`` speaks neither, and the personal channel
refuses a mailbox without TLS). In the same run, to the same sink, the very same messages
go through a plain ``smtplib`` loop on one connection: the ceiling. Printed:

* pipeline throughput (queue → every row ``sent``), SMTP sessions opened, batches;
* SQL queries per delivery, measured in process for two batch sizes (must be constant);
* ceiling throughput and the ratio pipeline / ceiling (target ≥ 0.6).

The preset's rate limit is lifted (``EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE``): the
benchmark measures the pipeline, not a provider's pace.

Run it like ``bench/run.sh`` runs the report benchmark (a throw-away PostgreSQL and Redis)::

    bench/run.sh bench/send_batch.py          # if run.sh accepts a script argument
    # or, with services of your own (the database's bench rows are replaced):
    DATABASE_URL=postgres://user@host:port/db REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/send_batch.py [--invoices 1000] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import base64
import os
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psicogest.settings")
os.environ.setdefault("DJANGO_ENV", "development")
os.environ["EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE"] = "1000000"
os.environ.setdefault("EMAILSETTINGS_BATCH_SIZE", "50")

WORK = Path(tempfile.mkdtemp(prefix="psicogest-send-bench-"))
os.environ["EMAILSETTINGS_SMTP_EXTRA_CA_FILE"] = str(WORK / "ca" / "ca.pem")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from emailsettings import delivery as services  # noqa: E402
from emailsettings.messages import build_message, message_bytes  # noqa: E402
from emailsettings.models import (  # noqa: E402
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    SmtpAccount,  # noqa: E402
)
from psicogest.devsmtp import LocalCA, SmtpTestServer  # noqa: E402
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


class Sink:
    """The SMTP sink in a process of its own, so that it does not share a core (and the
    GIL) with either client. Commands on stdin: ``stats`` → "connections messages"."""

    def __init__(self, ca_dir: Path) -> None:
        from psicogest.devsmtp import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(ca_dir), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the SMTP sink did not start")

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


def remove_bench_rows() -> None:
    Invoice.objects.filter(practitioner__email=BENCH_EMAIL).delete()
    Practitioner.objects.filter(email=BENCH_EMAIL).delete()


def prepare(count: int, server: Sink) -> tuple[Practitioner, list[Invoice]]:
    from decimal import Decimal

    remove_bench_rows()
    practitioner = Practitioner.objects.create_user(
        BENCH_EMAIL, "password", title="Dott.ssa", first_name="Maria", last_name="Benchi"
    )
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    account = SmtpAccount(
        practitioner=practitioner,
        email=MAILBOX,
        preset="custom",
        host="127.0.0.1",
        port=server.port,
        security="starttls",
        username=MAILBOX,
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
    for n, patient in enumerate(patients):
        number = f"{n + 1}/2026"
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


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    log = WORK / "worker.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
            ids.append(services.queue_invoice_email(invoice).pk)
        with CaptureQueriesContext(connection) as captured:
            services.send_batch(delivery_ids=ids)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    if not str(settings.DATABASES["default"]["ENGINE"]).endswith("postgresql"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database (see the docstring).")
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        raise SystemExit("Set REDIS_URL (see the docstring).")
    settings.MEDIA_ROOT = str(WORK / "media")
    os.environ["DJANGO_MEDIA_ROOT"] = settings.MEDIA_ROOT
    call_command("migrate", verbosity=0)

    ca = LocalCA.create(WORK / "ca")
    server = Sink(ca.directory)
    from psicogest.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    try:
        print(f"Preparing {args.invoices} invoices with 40 KB PDFs…", flush=True)
        practitioner, invoices = prepare(args.invoices, server)
        worker = start_worker(args.concurrency)
        try:
            time.sleep(3)  # the worker's pool is up before the clock starts
            connections_before, received_before = server.stats()
            started = time.perf_counter()
            deliveries = services.queue_invoice_emails(invoices)
            queued = time.perf_counter() - started
            ids = [d.pk for d in deliveries]
            while True:
                pending = Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.SENT)
                if not pending.exists():
                    break
                if pending.exclude(
                    status__in=(DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
                ).exists():
                    print(
                        "Some deliveries did not go out:",
                        set(pending.values_list("status", flat=True)),
                    )
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            connections_after, received_after = server.stats()
            sessions = connections_after - connections_before
            received = received_after - received_before
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)

        batches = -(-args.invoices // int(os.environ["EMAILSETTINGS_BATCH_SIZE"]))
        per_delivery = queries_per_delivery(practitioner)

        messages = [
            (d.recipient, message_bytes(build_message(d)))
            for d in Delivery.objects.filter(pk__in=ids).select_related("invoice")
        ]
        ceiling_seconds = ceiling(messages, server)

        pipeline_rate = args.invoices / elapsed
        ceiling_rate = len(messages) / ceiling_seconds
        print()
        print(f"invoices                      {args.invoices} (PDF 40 KB each)")
        print(f"worker concurrency            {args.concurrency}")
        print(f"queueing (1 transaction)      {queued:.2f} s")
        print(f"pipeline: queue → all sent    {elapsed:.2f} s, {pipeline_rate:.1f} msg/s")
        print(f"messages received by sink     {received}")
        print(f"SMTP sessions opened          {sessions} (batches: {batches})")
        for size, count in per_delivery.items():
            print(f"SQL queries per delivery      {count:.1f} (batch of {size}, in process)")
        print(f"ceiling: smtplib, 1 conn      {ceiling_seconds:.2f} s, {ceiling_rate:.1f} msg/s")
        print(f"ratio pipeline / ceiling      {pipeline_rate / ceiling_rate:.2f} (target ≥ 0.6)")
    finally:
        server.stop()
        remove_bench_rows()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sink"]:
        run_sink(sys.argv[2], int(sys.argv[3]))
    else:
        main()
