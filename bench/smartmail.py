"""Benchmark of the Smart Mail channel: anymail's Postmark backend against a local ESP.

The ESP is a local stand-in for Postmark's send API (``devtools/espserver.py``: ``POST /email``
with JSON, ``200`` and a ``MessageID`` after 50 ms, HTTP/1.1 keep-alive, a thread per
connection) in a process of its own, so it is not the bottleneck. anymail is pointed at it
through settings alone (``POSTMARK_API_URL``, read into ``ANYMAIL``); Smart Mail's
per-practitioner pace and daily quotas are lifted (``EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE``
and the quotas set to 0): the benchmark measures the pipeline, not the platform's limits.

The same 1,000 invoices with a 40 KB PDF (the helpers of ``bench/send_batch.py``) go:

* through the pipeline: queued with ``queue_invoice_emails`` and sent by a real Celery worker
  on Redis (queue → every row ``sent``), with the TCP connections the ESP saw opened; with
  ``--concurrency 2`` the practitioner gets two worker slots
  (``EMAILSETTINGS_MAILBOX_WORKER_SLOTS``), else the second process would have nothing to do;
* through a plain ``requests`` loop on one keep-alive ``Session`` posting the very same
  requests (built by anymail's payload, so same JSON, same headers): the ceiling;
* in process, ``send_batch`` as one worker runs it: SQL statements and CPU ms per delivery,
  quotas lifted and with a daily quota in force (the quota is claimed per batch).

Each pipeline and in-process measurement runs once for every ``--in-flight`` value (the
Smart Mail requests a batch keeps in flight, ``EMAILSETTINGS_SMART_MAIL_CONCURRENCY``; the
first value, 1 by default, is the baseline of the same run).

Run: ``bench/run.sh bench/smartmail.py [--invoices 1000] [--concurrency 1] [--delay 0.05]
[--in-flight 1,4]``.
Figures only, with their targets; never a timed assertion.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ESP_PORT = _free_port()
# Read by Django's settings (and the worker's) when send_batch below sets Django up.
os.environ["EMAIL_BACKEND"] = "anymail.backends.postmark.EmailBackend"
os.environ["POSTMARK_SERVER_TOKEN"] = "bench-server-token"
os.environ["POSTMARK_API_URL"] = f"http://127.0.0.1:{ESP_PORT}/"
os.environ["EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE"] = "0"
os.environ["EMAILSETTINGS_WARMUP_DAILY_QUOTA"] = "0"
os.environ["EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA"] = "0"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import send_batch as base  # noqa: E402  (Django set up, the 40 KB invoices, the worker)
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Max, Min  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from emailsettings import conf  # noqa: E402
from emailsettings.covermail.message import build_message  # noqa: E402
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings  # noqa: E402
from emailsettings.outbox.queueing import queue_invoice_emails  # noqa: E402
from emailsettings.outbox.worker import send_batch  # noqa: E402

TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)


class Esp(base.StatsProcess):
    """The stand-in in a process of its own; ``stats()`` → (connections, messages)."""

    def __init__(self, *, port: int, delay: float) -> None:
        super().__init__(
            [sys.executable, "-m", "devtools.espserver", str(port), str(delay)],
            what="the ESP stand-in",
        )


def requests_for(deliveries: list[Delivery]) -> list[dict]:
    """The HTTP requests anymail makes for these deliveries (as SmartMailSender sets them up)."""
    backend = import_string(settings.EMAIL_BACKEND)()
    built = []
    for delivery in deliveries:
        message = build_message(delivery)
        message.metadata = {"delivery_id": str(delivery.pk)}  # type: ignore[attr-defined]
        message.tags = ["invoice"]  # type: ignore[attr-defined]
        message.track_opens = False  # type: ignore[attr-defined]
        message.track_clicks = False  # type: ignore[attr-defined]
        payload = backend.build_message_payload(message, backend.send_defaults)
        params = payload.get_request_params(backend.api_url)
        params.setdefault("timeout", 30)
        built.append(params)
    return built


def ceiling_seconds(prepared: list[dict]) -> float:
    """A plain requests loop on one keep-alive Session: the same requests, one after another."""
    import requests

    started = time.perf_counter()
    with requests.Session() as session:
        for params in prepared:
            response = session.request(**params)
            response.raise_for_status()
            response.json()
    return time.perf_counter() - started


def in_process(practitioner: object, count: int, *, daily_quota: int) -> dict[str, float]:
    """send_batch in this process for ``count`` fresh deliveries: statements and CPU."""
    settings.EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA = daily_quota
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = daily_quota
    invoices = list(base.Invoice.objects.filter(practitioner=practitioner).order_by("pk")[:count])
    Delivery.objects.filter(practitioner=practitioner).delete()
    ids = [d.pk for d in queue_invoice_emails(invoices)]
    batch = int(os.environ["EMAILSETTINGS_BATCH_SIZE"])
    cpu, wall = time.process_time(), time.perf_counter()
    batches = [ids[start : start + batch] for start in range(0, len(ids), batch)]
    with CaptureQueriesContext(connection) as captured:
        if os.environ.get("BENCH_PROFILE"):  # a cProfile of the first measurement
            import cProfile

            cProfile.runctx(
                "for ids in batches: send_batch(delivery_ids=ids, time_budget=3600)",
                globals(),
                {"batches": batches, "send_batch": send_batch},
                os.environ.pop("BENCH_PROFILE"),
            )
        else:
            for ids_of_batch in batches:
                send_batch(delivery_ids=ids_of_batch, time_budget=3600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    settings.EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA = 0
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 0
    sent = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENT).count()
    queries = captured.captured_queries
    statements = [q for q in queries if not TRANSACTION_CONTROL.match(q["sql"])]
    return {
        "sent": sent,
        "rate": sent / wall,
        "statements": len(statements) / max(sent, 1),
        "round_trips": len(queries) / max(sent, 1),
        "cpu_ms": 1000 * cpu / max(sent, 1),
    }


def pipeline_run(
    practitioner: object,
    invoices: list,
    esp: Esp,
    args: argparse.Namespace,
    *,
    in_flight: int,
) -> dict[str, float]:
    """Queue ``invoices`` and let a real worker (``args.concurrency`` processes, ``in_flight``
    Smart Mail requests a batch) send them all: times and what the ESP saw."""
    Delivery.objects.filter(practitioner=practitioner).delete()
    worker = base.start_worker(
        args.concurrency, env={"EMAILSETTINGS_SMART_MAIL_CONCURRENCY": str(in_flight)}
    )
    try:
        time.sleep(3)  # the worker's pool is up before the clock starts
        connections_before, received_before = esp.stats()
        started = time.perf_counter()
        ids = [d.pk for d in queue_invoice_emails(invoices)]
        queued = time.perf_counter() - started
        base.wait_until_sent(ids)
        elapsed = time.perf_counter() - started
        connections_after, received_after = esp.stats()
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
    first, last = (
        Delivery.objects.filter(pk__in=ids)
        .aggregate(first=Min("sent_at"), last=Max("sent_at"))
        .values()
    )
    return {
        "sending": (len(ids) - 1) / max((last - first).total_seconds(), 1e-6),
        "queued": queued,
        "elapsed": elapsed,
        "rate": len(ids) / elapsed,
        "opened": connections_after - connections_before,
        "received": received_after - received_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--in-flight",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8],
        help="EMAILSETTINGS_SMART_MAIL_CONCURRENCY values to compare (the first: the baseline)",
    )
    parser.add_argument("--delay", type=float, default=0.05, help="the ESP's answer time (s)")
    parser.add_argument(
        "--in-process", type=int, default=300, help="deliveries measured in process"
    )
    args = parser.parse_args()
    base.prepare_services()

    esp = Esp(port=ESP_PORT, delay=args.delay)
    base.purge_broker()
    try:
        print(f"Preparing {args.invoices} invoices with 40 KB PDFs…", flush=True)
        count = max(args.invoices, args.in_process)
        practitioner, invoices = base.prepare(count, SimpleNamespace(port=465))
        EmailSettings.objects.filter(practitioner=practitioner).update(channel=Channel.SMART_MAIL)
        invoices = invoices[: args.invoices]

        # One practitioner: with one worker slot a second process would have nothing to do.
        os.environ["EMAILSETTINGS_MAILBOX_WORKER_SLOTS"] = str(args.concurrency)
        runs = {
            in_flight: pipeline_run(practitioner, invoices, esp, args, in_flight=in_flight)
            for in_flight in args.in_flight
        }
        # Batches of EMAILSETTINGS_BATCH_SIZE, or one in the fast lane when they all fit in
        # it (outbox.dispatch).
        size = int(os.environ["EMAILSETTINGS_BATCH_SIZE"])
        batches = 1 if args.invoices <= conf.fast_lane_size() else -(-args.invoices // size)

        deliveries = list(
            Delivery.objects.filter(practitioner=practitioner).select_related("invoice")
        )
        prepared = requests_for(deliveries)
        before, _messages = esp.stats()
        ceiling = len(prepared) / ceiling_seconds(prepared)
        ceiling_connections = esp.stats()[0] - before

        in_process_runs = {}
        for in_flight in args.in_flight:
            settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = in_flight
            in_process_runs[in_flight] = (
                in_process(practitioner, args.in_process, daily_quota=0),
                in_process(practitioner, args.in_process, daily_quota=100_000),
            )

        print()
        print(
            f"Smart Mail (anymail Postmark backend) → local ESP stand-in answering in "
            f"{1000 * args.delay:.0f} ms"
        )
        print(f"invoices                         {args.invoices} (PDF 40 KB each)")
        print(
            f"worker processes                 {args.concurrency}"
            f" (worker slots of the practitioner: {args.concurrency})"
        )
        print(
            f"ceiling: requests, 1 Session     {ceiling:.1f} msg/s"
            f" ({ceiling_connections} TCP connection, one request at a time)"
        )
        one = runs[args.in_flight[0]]["rate"]
        for in_flight, run in runs.items():
            print(f"-- EMAILSETTINGS_SMART_MAIL_CONCURRENCY={in_flight}")
            print(f"queueing (1 transaction)         {run['queued']:.2f} s")
            print(
                f"pipeline: queue → all sent       {run['elapsed']:.2f} s, {run['rate']:.1f} msg/s"
                f" ({run['rate'] / one:.2f}× with {args.in_flight[0]} in flight, queueing"
                f" included)"
            )
            print(
                f"sending: first → last sent       {run['sending']:.1f} msg/s"
                f" ({run['sending'] / runs[args.in_flight[0]]['sending']:.2f}× with"
                f" {args.in_flight[0]} in flight; target ≥ 3× with 1, per worker process)"
            )
            print(f"messages received by the ESP     {run['received']}")
            print(
                f"TCP connections opened           {run['opened']} (batches: {batches},"
                f" the fast lane's included; target ≤ {in_flight} a batch)"
            )
            print(f"ratio pipeline / ceiling         {run['rate'] / ceiling:.2f} (target ≥ 0.8)")
            lifted, quota = in_process_runs[in_flight]
            for title, figures in (("quotas lifted", lifted), ("daily quota in force", quota)):
                print(
                    f"in process, {title:<21}{figures['rate']:.1f} msg/s, "
                    f"{figures['statements']:.1f} SQL statements per delivery (target ≤ 5; "
                    f"with BEGIN/COMMIT {figures['round_trips']:.1f}), "
                    f"CPU {figures['cpu_ms']:.1f} ms per delivery ({int(figures['sent'])} sent)"
                )
    finally:
        esp.stop()
        base.remove_bench_rows()
        shutil.rmtree(base.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
