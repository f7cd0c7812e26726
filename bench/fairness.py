"""Benchmark of fair queues at month's end (issue 13): one practitioner queues 5,000
invoices, then fifty others queue 20 each right after; how long do the small ones wait?

Real parts: one Celery worker with a prefork pool of two processes (``--concurrency``) on
Redis, each invoice with a 40 KB PDF sent over personal SMTP (implicit TLS) to Postfix's
``smtp-sink`` behind ``stunnel`` (``bench/sinks.py``: not the bottleneck), the preset's rate
limit lifted as in ``bench/send_batch.py``, whose helpers this reuses. Each scenario starts
from no deliveries and queues each practitioner's invoices with ``queue_invoice_emails``
(one transaction each), the big one first. Measured from the rows' ``sent_at``, in one run:

* the reference: one small practitioner's 20 queued alone, on idle workers;
* the bound: the fifty small ones queued with no big one, on the same worker as each
  scenario (1,000 invoices on two processes cannot all be sent in the time of 20, whatever
  the order);
* "today" (FIFO): ``EMAILSETTINGS_MAILBOX_WORKER_SLOTS`` so high that every batch is
  published at once, in order — the small ones wait behind the big one's 100 batches;
* fair dispatch (``emailsettings/outbox/dispatch.py``) with 1 and 2 slots per
  practitioner (``--slots``): the big one has that many batches in the broker or running,
  its next one joins the queue behind everybody else's; "1+1" is one slot and one more lent
  while nobody else waits (``EMAILSETTINGS_MAILBOX_IDLE_SLOTS``), given back between two
  messages as soon as somebody does.

Printed for the small practitioners: time from queueing to their first and to their last
invoice sent (median and worst), and for the big one its total time; the targets beside.

Run: ``bench/run.sh bench/fairness.py [--big 5000] [--small 50] [--each 20] [--slots 1,1+1,2]``
(smaller numbers for a quicker run). Figures only, never a timed assertion.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import send_batch as base  # noqa: E402  (Django set up, the 40 KB invoices, the worker)
import sinks  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db.models import Max, Min  # noqa: E402
from django.utils import timezone  # noqa: E402

from devtools.smtpserver import LocalCA  # noqa: E402
from emailsettings.models import Delivery  # noqa: E402
from emailsettings.outbox.queueing import queue_invoice_emails  # noqa: E402
from psicogest.models import Invoice, Practitioner  # noqa: E402

BIG_EMAIL = "grande@bench.test"
FIFO_SLOTS = 1_000_000  # every batch published at once: the order of publishing only


def small_email(n: int) -> str:
    return f"piccolo{n}@bench.test"


def scenario(
    queues: list[list[Invoice]], practitioners: list[Practitioner]
) -> list[tuple[float, float]]:
    """Queue each list of invoices (one practitioner's) in turn, as fast as possible; for
    each, the seconds from the start of its queueing to its first and its last row sent."""
    global LAST_BIG_PARALLELISM
    Delivery.objects.filter(practitioner__in=practitioners).delete()
    base.forget_dispatch_state(practitioners)
    started: list[datetime.datetime] = []
    ids: list[list[int]] = []
    for invoices in queues:
        started.append(timezone.now())
        ids.append([d.pk for d in queue_invoice_emails(invoices)])
    base.wait_until_sent([pk for group in ids for pk in group], poll=0.2)
    seconds: list[tuple[float, float]] = []
    for start, group in zip(started, ids, strict=True):
        sent = Delivery.objects.filter(pk__in=group).aggregate(
            first=Min("sent_at"), last=Max("sent_at")
        )
        first = (sent["first"] - start).total_seconds() if sent["first"] else float("nan")
        last = (sent["last"] - start).total_seconds() if sent["last"] else float("nan")
        seconds.append((first, last))
    LAST_BIG_PARALLELISM = parallelism(ids[0], seconds[0][1])
    return seconds


def parallelism(ids: list[int], total: float) -> float:
    """How many of one practitioner's batches were sending at once, on average: the sum of
    its batches' spans (first to last ``sent_at``; a batch is 50 consecutive ids, as the
    dispatcher pops them) over its total time."""
    size = int(os.environ["EMAILSETTINGS_BATCH_SIZE"])
    times = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "sent_at"))
    ordered = sorted(ids)
    busy = 0.0
    for i in range(0, len(ordered), size):
        stamps = [times[pk] for pk in ordered[i : i + size] if times.get(pk)]
        if len(stamps) > 1:
            # n messages span n - 1 intervals: scaled to n for the batch's whole time.
            span = (max(stamps) - min(stamps)).total_seconds()
            busy += span * len(stamps) / (len(stamps) - 1)
    return busy / total if total else float("nan")


LAST_BIG_PARALLELISM = float("nan")


@dataclass
class Run:
    """One worker setting: the small ones alone (the bound), then big + small."""

    name: str
    small_only: list[tuple[float, float]]
    mixed: list[tuple[float, float]]
    big_parallelism: float

    @property
    def bound(self) -> float:
        return max(last for _first, last in self.small_only)


class Worker:
    """The Celery worker for a slot setting (the publishing process uses the same)."""

    def __init__(
        self,
        concurrency: int,
        slots: int,
        *,
        lent: int = 0,
        warm_up: list[list[Invoice]],
        everyone: list[Practitioner],
    ) -> None:
        self.concurrency, self.slots, self.lent = concurrency, slots, lent
        self.warm_up, self.everyone = warm_up, everyone

    def __enter__(self) -> Worker:
        settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = self.slots
        settings.EMAILSETTINGS_MAILBOX_IDLE_SLOTS = self.lent
        self.proc = base.start_worker(
            self.concurrency,
            env={
                "EMAILSETTINGS_MAILBOX_WORKER_SLOTS": str(self.slots),
                "EMAILSETTINGS_MAILBOX_IDLE_SLOTS": str(self.lent),
            },
            name=f"worker-slots-{self.slots}-{self.lent}",
        )
        time.sleep(3)  # the pool is up before the clock starts
        # Each process sends a batch first: imports, database and TLS contexts warm.
        scenario(self.warm_up, self.everyone)
        return self

    def __exit__(self, *exc: object) -> None:
        base.stop_worker(self.proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=5000, help="the big practitioner's invoices")
    parser.add_argument("--small", type=int, default=50, help="small practitioners")
    parser.add_argument("--each", type=int, default=20, help="invoices of each small one")
    parser.add_argument(
        "--slots",
        default="1,1+1,2",
        help="fair runs, slots per practitioner (+ slots lent while nobody else waits)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--alone", type=int, default=3, help="runs of one small one alone")
    args = parser.parse_args()
    slot_settings = [
        (int(own), int(lent or 0))
        for own, _plus, lent in (value.partition("+") for value in args.slots.split(",") if value)
    ]
    base.prepare_services()
    ca = LocalCA.create(base.WORK / "ca")
    sinks.issue_certificate(ca)
    base.purge_broker()
    emails = [BIG_EMAIL] + [small_email(n) for n in range(args.small)]
    try:
        with sinks.tls_sink(ca, address="127.0.0.1") as port:
            server = SimpleNamespace(port=port)
            total = args.big + args.small * args.each
            print(f"Preparing {total} invoices with 40 KB PDFs…", flush=True)
            big, big_invoices = base.prepare(
                args.big, server, email=BIG_EMAIL, security="ssl", shared_pdf=True
            )
            smalls = [
                base.prepare(
                    args.each, server, email=small_email(n), security="ssl", shared_pdf=True
                )
                for n in range(args.small)
            ]
            practitioners = [big] + [practitioner for practitioner, _ in smalls]
            small_queues = [invoices for _, invoices in smalls]
            warm = {"warm_up": small_queues[: args.concurrency], "everyone": practitioners}
            settings_to_run = [
                (
                    f"fair, {n} slot(s) + {lent} lent when idle" if lent else f"fair, {n} slot(s)",
                    n,
                    lent,
                )
                for n, lent in slot_settings
            ]
            settings_to_run.append(("FIFO (today: batches published in order)", FIFO_SLOTS, 0))
            runs: list[Run] = []
            alone: list[float] = []
            for name, slots, lent in settings_to_run:
                with Worker(args.concurrency, slots, lent=lent, **warm):
                    if not alone:
                        alone = [
                            scenario([small_queues[n % args.small]], practitioners)[0][1]
                            for n in range(args.alone)
                        ]
                    small_only = scenario(small_queues, practitioners)
                    mixed = scenario([big_invoices, *small_queues], practitioners)
                runs.append(Run(name, small_only, mixed, LAST_BIG_PARALLELISM))
                print(f"  {name}: done", flush=True)
        report(args, alone=alone, runs=runs)
    finally:
        base.clean_up(emails)


def report(args: argparse.Namespace, *, alone: list[float], runs: list[Run]) -> None:
    reference = statistics.median(alone)
    batch = int(os.environ["EMAILSETTINGS_BATCH_SIZE"])
    fifo_big = runs[-1].mixed[0][1]
    print(
        f"\nFairness — {args.big:,} invoices of one practitioner, then {args.small} × "
        f"{args.each} of others (40 KB PDFs, batches of {batch});\none Celery worker, prefork"
        f" pool of {args.concurrency} processes, Redis; smtp-sink behind stunnel (implicit TLS)."
        f"\nOne small practitioner's {args.each} alone, on idle workers (the reference):"
        f" {reference:.2f} s (median of {len(alone)})."
        f"\nbound: the {args.small} small ones queued with no big one, worst (same worker):"
        f" {args.small * args.each:,} invoices on {args.concurrency} processes.\n"
    )
    print(
        f"  {'':41}{'small ones: first sent':>23}{'last sent':>19}{'worst/':>8}{'worst/':>8}"
        f"{'':8}{'big':>9}{'big/':>6}{'big':>6}"
    )
    print(
        f"  {'':41}{'median':>12}{'worst':>11}{'median':>10}{'worst':>9}{'ref':>8}"
        f"{'bound':>8}{'bound':>8}{'total':>9}{'FIFO':>6}{'par.':>6}"
    )
    for run in runs:
        small = run.mixed[1:]
        firsts = [first for first, _last in small]
        lasts = [last for _first, last in small]
        big = run.mixed[0][1]
        print(
            f"  {run.name:41}{statistics.median(firsts):10.2f} s{max(firsts):9.2f} s"
            f"{statistics.median(lasts):8.2f} s{max(lasts):7.2f} s"
            f"{max(lasts) / reference:7.1f}×{max(lasts) / run.bound:7.2f}×"
            f"{run.bound:6.1f} s{big:7.1f} s{big / fifo_big:5.2f}×{run.big_parallelism:6.2f}"
        )
    print(
        "\n  Targets (issue 13): every small practitioner done within 1.1× the time its own"
        f" {args.each} take alone (worst/ref ≤ 1.1),\n  and the big one's total within 1.1×"
        " today's (big/FIFO ≤ 1.1). worst/ref cannot reach 1.1 while the"
        f" {args.small * args.each:,} small invoices\n  share {args.concurrency} processes:"
        " worst/bound ≤ 1.1 (done as soon as with no big one at all) is the reachable reading."
        "\n  big par.: the big one's batches sending at once, on average (its share of the"
        " processes);\n  bound: also the machine's pace at the time (the runs are minutes"
        " apart on a shared machine)."
    )


if __name__ == "__main__":
    main()
