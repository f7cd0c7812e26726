"""Benchmark of the newcomer's wait at month's end (issue 27): while forty practitioners'
4,000 Smart Mail invoices drain, how long does a practitioner who queues one invoice wait?

Real parts, set up as ``bench/smartmail.py`` does (whose setup this imports): anymail's
Postmark backend pointed through settings alone at the local ESP stand-in
(``devtools/espserver.py``, answering in 50 ms, in a process of its own), Smart Mail's pace
and daily quotas lifted; one Celery worker with a prefork pool of two processes
(``--concurrency``) on Redis, as the other benchmarks start it; 40 KB PDFs made by the
helpers of ``bench/send_batch.py``; batches of ``EMAILSETTINGS_BATCH_SIZE`` (50), one worker
slot per practitioner (the default).

Each scenario, on a worker started for it (the worker reads the setting from its
environment, the publishing process from its settings):

* warm-up: each worker process sends a small batch (imports, database, HTTP session);
* idle probes (``--idle-probes``): a new practitioner queues one invoice on the idle system,
  one after the other — the baseline;
* the load: ``--practitioners`` practitioners queue ``--invoices`` invoices each, one
  ``queue_invoice_emails`` transaction each;
* probes under load (``--probes``, every ``--probe-every`` seconds while the load drains):
  each time a practitioner never seen before (nothing in flight) queues one invoice (the
  intervals jittered, ±50 %, so that the probes do not keep to one phase of the batches).

A probe's wait runs from the moment its ``queue_invoice_emails`` call starts (the queueing
transaction and its commit included) to its row's ``sent_at``; the big senders' total from
the start of the load's queueing to the last ``sent_at`` of its rows. Scenarios
(``--scenarios``): ``off`` is today, without the fast lane (``EMAILSETTINGS_FAST_LANE_SIZE``
0: a newcomer's batch waits behind one batch of every practitioner with a backlog), ``on``
the default fast lane (a practitioner with nothing in flight who queues at most 10 invoices
gets them in one batch published ahead of the backlogs; the big senders, 100 each, take
turns from their first batch). Between
scenarios the worker is stopped, the broker's queue purged, the rows deleted and the Redis
dispatch state forgotten.

Printed per scenario: probes under load (p50, p95, max), idle probes (p50, p95), the big
senders' total, its ratio to the ``off`` scenario's and the throughput, with the targets
(p95 ≤ 2 s: the idle figure plus one message's time; big total ≤ 1.10× today's).

Run: ``bench/run.sh bench/monthend.py [--practitioners 40] [--invoices 100] [--probes 30]
[--probe-every 0.5] [--delay 0.05] [--concurrency 2] [--scenarios off,on]`` (e.g.
``--practitioners 10 --invoices 50`` for a quick run). Figures only, never a timed
assertion.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The ESP's environment (before Django is set up), the stand-in, the 40 KB invoices, the worker.
import smartmail  # noqa: E402, I001
import send_batch as base  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db.models import Max  # noqa: E402
from django.utils import timezone  # noqa: E402

from emailsettings import conf  # noqa: E402
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings  # noqa: E402
from emailsettings.outbox.queueing import queue_invoice_emails  # noqa: E402
from psicogest.models import Invoice, Practitioner  # noqa: E402

FAST_LANE_DEFAULT = 10  # conf.fast_lane_size()'s default: the "on" scenario
SCENARIOS = {"off": 0, "on": FAST_LANE_DEFAULT}
TARGET_P95_SECONDS = 2.0
TARGET_BIG_RATIO = 1.10


@dataclass
class Sender:
    """A bench practitioner on Smart Mail and its invoices."""

    practitioner: Practitioner
    invoices: list[Invoice]


@dataclass
class Outcome:
    """One scenario's figures (seconds)."""

    name: str
    fast_lane: int
    probes: list[float]
    probes_planned: int
    idle: list[float]
    big_total: float
    big_messages: int


def smart_mail_sender(email: str, count: int) -> Sender:
    practitioner, invoices = base.prepare(
        count, SimpleNamespace(port=465), email=email, shared_pdf=True
    )
    EmailSettings.objects.filter(practitioner=practitioner).update(channel=Channel.SMART_MAIL)
    return Sender(practitioner, invoices)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (NumPy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def smart_mail_concurrency() -> str:
    """``EMAILSETTINGS_SMART_MAIL_CONCURRENCY`` (ESP requests in flight per batch) where the
    tree has it; the benchmark runs the same either way."""
    reader = getattr(conf, "smart_mail_concurrency", None)
    if callable(reader):
        return str(reader())
    value = getattr(settings, "EMAILSETTINGS_SMART_MAIL_CONCURRENCY", None)
    return "not a setting on this tree" if value is None else str(value)


def reset(practitioners: Sequence[Practitioner]) -> None:
    Delivery.objects.filter(practitioner__in=practitioners).delete()
    base.forget_dispatch_state(practitioners)


def wait_until_sent(practitioners: Sequence[Practitioner], *, poll: float = 0.2) -> None:
    """Until every row of ``practitioners`` is ``sent`` (see send_batch.wait_until_sent)."""
    base.wait_until_sent(Delivery.objects.filter(practitioner__in=practitioners), poll=poll)


def probe(sender: Sender) -> tuple[datetime.datetime, int]:
    """Queue the newcomer's one invoice; when the call started, and the row."""
    started = timezone.now()
    (delivery,) = queue_invoice_emails(sender.invoices)
    return started, delivery.pk


def waits(probes: Sequence[tuple[datetime.datetime, int]]) -> list[float]:
    """Seconds from each probe's queueing to its row's ``sent_at`` (unsent rows left out)."""
    sent = dict(
        Delivery.objects.filter(pk__in=[pk for _at, pk in probes]).values_list("pk", "sent_at")
    )
    return [(sent[pk] - at).total_seconds() for at, pk in probes if sent.get(pk) is not None]


@contextmanager
def worker(concurrency: int, fast_lane: int, name: str) -> Iterator[None]:
    settings.EMAILSETTINGS_FAST_LANE_SIZE = fast_lane  # the publishing side (this process)
    proc = base.start_worker(
        concurrency, env={"EMAILSETTINGS_FAST_LANE_SIZE": str(fast_lane)}, name=name
    )
    try:
        time.sleep(3)  # the pool is up before the clock starts
        yield
    finally:
        base.stop_worker(proc)


def scenario(
    name: str,
    fast_lane: int,
    *,
    args: argparse.Namespace,
    load: list[Sender],
    warm_up: list[Sender],
    idle_probes: list[Sender],
    load_probes: list[Sender],
    everyone: list[Practitioner],
) -> Outcome:
    base.purge_broker()
    reset(everyone)
    with worker(args.concurrency, fast_lane, f"worker-{name}"):
        for sender in warm_up:
            queue_invoice_emails(sender.invoices)
        wait_until_sent([sender.practitioner for sender in warm_up])

        idle = []
        for sender in idle_probes:
            idle.append(probe(sender))
            wait_until_sent([sender.practitioner], poll=0.01)
            time.sleep(0.5)

        big = [sender.practitioner for sender in load]
        load_started = timezone.now()
        for sender in load:
            queue_invoice_emails(sender.invoices)
        print(
            f"  {name}: load queued in {(timezone.now() - load_started).total_seconds():.1f} s",
            flush=True,
        )
        pending = Delivery.objects.filter(practitioner__in=big).exclude(status=DeliveryStatus.SENT)
        under_load = []
        # Jittered intervals: probes at a fixed period would keep sampling the same phases of
        # the workers' batch cycle (a batch of 50 takes a few seconds).
        jitter = random.Random(args.seed)
        next_probe = time.monotonic()
        for sender in load_probes:
            next_probe += args.probe_every * jitter.uniform(0.5, 1.5)
            time.sleep(max(0.0, next_probe - time.monotonic()))
            if not pending.exists():
                break  # the load has drained: the remaining probes would be idle ones
            under_load.append(probe(sender))
        wait_until_sent(everyone)
        last = Delivery.objects.filter(practitioner__in=big).aggregate(last=Max("sent_at"))
        big_messages = Delivery.objects.filter(
            practitioner__in=big, status=DeliveryStatus.SENT
        ).count()
    big_total = (last["last"] - load_started).total_seconds() if last["last"] else float("nan")
    print(f"  {name}: done, load drained in {big_total:.1f} s", flush=True)
    return Outcome(
        name=name,
        fast_lane=fast_lane,
        probes=waits(under_load),
        probes_planned=len(load_probes),
        idle=waits(idle),
        big_total=big_total,
        big_messages=big_messages,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--practitioners", type=int, default=40, help="big senders")
    parser.add_argument("--invoices", type=int, default=100, help="invoices of each big sender")
    parser.add_argument("--probes", type=int, default=30, help="newcomers while the load drains")
    parser.add_argument("--probe-every", type=float, default=0.5, help="seconds between probes")
    parser.add_argument("--seed", type=int, default=27, help="of the probes' jitter")
    parser.add_argument("--idle-probes", type=int, default=5, help="newcomers on an idle system")
    parser.add_argument("--delay", type=float, default=0.05, help="the ESP's answer time (s)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--scenarios", default="off,on", help="fast lane off (today) and/or on")
    args = parser.parse_args()
    names = [name for name in args.scenarios.split(",") if name]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"Unknown scenarios {sorted(unknown)}: choose among off, on.")
    base.prepare_services()
    # Throw-away practitioners nobody logs in as: the test suite's cheap hasher, so that
    # creating a hundred of them does not take minutes of PBKDF2.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    esp = smartmail.Esp(port=smartmail.ESP_PORT, delay=args.delay)
    emails: list[str] = []
    try:
        total = args.practitioners * args.invoices
        print(f"Preparing {total:,} invoices with 40 KB PDFs…", flush=True)

        def sender(email: str, count: int) -> Sender:
            emails.append(email)
            return smart_mail_sender(email, count)

        load = [sender(f"mese{n}@bench.test", args.invoices) for n in range(args.practitioners)]
        warm_up = [sender(f"riscaldamento{n}@bench.test", 5) for n in range(args.concurrency)]
        # Each scenario has newcomers of its own: never seen by the dispatcher before.
        idle_probes = {
            name: [sender(f"vuoto-{name}-{n}@bench.test", 1) for n in range(args.idle_probes)]
            for name in names
        }
        load_probes = {
            name: [sender(f"nuovo-{name}-{n}@bench.test", 1) for n in range(args.probes)]
            for name in names
        }
        everyone = list(Practitioner.objects.filter(email__in=emails))
        outcomes = [
            scenario(
                name,
                SCENARIOS[name],
                args=args,
                load=load,
                warm_up=warm_up,
                idle_probes=idle_probes[name],
                load_probes=load_probes[name],
                everyone=everyone,
            )
            for name in names
        ]
        report(args, outcomes)
    finally:
        esp.stop()
        base.clean_up(emails)


def report(args: argparse.Namespace, outcomes: list[Outcome]) -> None:
    batch = int(os.environ["EMAILSETTINGS_BATCH_SIZE"])
    total = args.practitioners * args.invoices
    today = next((o.big_total for o in outcomes if o.fast_lane == 0), None)
    print(
        f"\nMonth-end — {args.practitioners} practitioners × {args.invoices} Smart Mail invoices"
        f" ({total:,}, 40 KB PDFs, batches of {batch}, {conf.mailbox_worker_slots()} worker"
        f" slot each);\nanymail's Postmark backend → ESP stand-in answering in"
        f" {1000 * args.delay:.0f} ms; one Celery worker, prefork pool of {args.concurrency}"
        f" processes, Redis.\nA probe: a new practitioner queues one invoice, every"
        f" {args.probe_every:g} s ± 50 % while the load drains; idle probes: the same on the idle"
        f" system.\nEMAILSETTINGS_SMART_MAIL_CONCURRENCY: {smart_mail_concurrency()}\n"
    )
    print(
        f"  {'scenario':24}{'probes':>8}{'p50':>9}{'p95':>9}{'max':>9}{'idle p50':>10}"
        f"{'idle p95':>10}{'big total':>11}{'on/off':>8}{'msg/s':>8}"
    )
    for o in outcomes:
        label = "fast lane off (today)" if o.fast_lane == 0 else f"fast lane on ({o.fast_lane})"
        ratio = f"{o.big_total / today:7.2f}×" if today else f"{'—':>8}"
        print(
            f"  {label:24}{len(o.probes):>4}/{o.probes_planned:<3}"
            f"{percentile(o.probes, 0.5):7.2f} s{percentile(o.probes, 0.95):7.2f} s"
            f"{max(o.probes, default=float('nan')):7.2f} s"
            f"{percentile(o.idle, 0.5):8.3f} s{percentile(o.idle, 0.95):8.3f} s"
            f"{o.big_total:9.1f} s{ratio}{o.big_messages / o.big_total:8.1f}"
        )
    print(f"  {'target':24}{'':8}{'':9}{'≤ 2 s':>9}{'':9}{'':10}{'':10}{'':11}{'≤ 1.10×':>8}")
    print(
        f"\n  Targets (issue 27): a newcomer's one invoice at p95 ≤ {TARGET_P95_SECONDS:g} s"
        " under the load (the idle figure plus one message's time), and the big senders'"
        f" total\n  within {TARGET_BIG_RATIO:.2f}× today's (fast lane off). probes: those"
        " queued while the load was still draining, of those planned;\n  big total: from"
        " the start of the load's queueing to its last invoice sent; msg/s: the load's"
        " messages over that time."
    )
    for o in outcomes:
        if o.probes:
            print(
                f"  {o.name}: probes under load, median {statistics.median(o.probes):.2f} s,"
                f" each: {', '.join(f'{w:.2f}' for w in o.probes)}"
            )


if __name__ == "__main__":
    main()
