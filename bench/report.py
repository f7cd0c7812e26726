"""Benchmark of the sent-email report ("Elenco invii email") on PostgreSQL.

Two scales, same data density (100 deliveries a day for the measured practitioner):

* small: the practitioner has 10,000 deliveries, the table holds 10,000 rows;
* large: the practitioner has 100,000 deliveries and 90 other practitioners 900,000 more
  (1,000,000 rows in the table).

For each page it prints the median server time (django.test.Client, in process: URL
resolving, middleware, queries, template rendering, without the test environment's
template instrumentation) and the number of SQL queries, then the
large/small ratio. Targets (issue 6): list page median < 50 ms, ≤ 10 queries and the same
count at both scales, large ≤ 1.5 × small.

Run it with ``bench/run.sh`` (starts a throw-away PostgreSQL like ``make test``), or
against a database of your own that it may fill::

    DATABASE_URL=postgres://user@host:port/empty_db .venv/bin/python bench/report.py

It uses that database for the 1,000,000 rows and creates ``<name>_bench_small`` beside it
for the 10,000 rows; the runs alternate between the two, so a busy machine slows both alike.
Both delivery tables are EMPTIED on every run: the script refuses to start when a table
holds deliveries of anyone but its own ``@bench.test`` users.
"""

from __future__ import annotations

import datetime
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psicogest.settings")
os.environ.setdefault("DJANGO_ENV", "development")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

PER_DAY = 100  # the measured practitioner's deliveries per day, at both scales
SECONDS_APART = 86400 // PER_DAY
OTHER_PRACTITIONERS = 90
RUNS = 40
CSV_RUNS = 5

# One statement per scale. Rows are interleaved in time order as a live table would be (a
# table filled one practitioner at a time would let the planner prefer the bare
# practitioner_id index thanks to a perfect physical correlation). Row i is the measured
# practitioner's when i %% k = 0 (k = 1 at the small scale, 10 at the large one).
_INSERT = """
INSERT INTO emailsettings_delivery (
    practitioner_id, invoice_id, patient_id, channel, status, recipient, patient_name,
    invoice_number, subject, from_header, reply_to, message_id, esp_message_id, body_text,
    body_html, attempts, phase, created_at, updated_at, queued_at, sent_at, last_error_class,
    last_error_code, last_error_enhanced, last_error_text, fallback_to_smart_mail, role,
    crashes, protection, reminder_level, with_invoice)
SELECT o.practitioner_id, o.invoice_id, o.patient_id,
    CASE WHEN s.j %% 3 = 0 THEN 'smtp' ELSE 'smart_mail' END,
    s.status,
    'paziente' || (s.j %% 5000) || '@example.test',
    (ARRAY['Giulia','Marco','Anna','Luca'])[1 + s.j %% 4] || ' '
        || (ARRAY['Rossi','Bianchi','Verdi','Neri','Gallo'])[1 + (s.j / 4) %% 5] || (s.j %% 997),
    ((s.j %% 9000) + 1) || '/' || (2026 - s.j / 36500),
    'Fattura n. ' || s.j,
    '"Dott.ssa Maria Rossi via PsicoGest" <fatture@psicogest.test>', 'maria@example.test',
    '<bench-' || s.i || '@psicogest.test>', '',
    'Gentile paziente, in allegato la fattura.', '',
    CASE WHEN s.status IN ('queued') THEN 0 WHEN s.status = 'deferred' THEN 2 ELSE 1 END,
    '', s.at, s.at, s.at,
    CASE WHEN s.status IN ('sent', 'delivered', 'bounced') THEN s.at END,
    CASE WHEN s.status = 'failed' THEN 'recipient_refused'
         WHEN s.status = 'deferred' THEN 'temporary' ELSE '' END,
    CASE WHEN s.status = 'failed' THEN 550 WHEN s.status = 'deferred' THEN 421 END,
    CASE WHEN s.status = 'failed' THEN '5.1.1' WHEN s.status = 'deferred' THEN '4.7.0'
         ELSE '' END,
    CASE WHEN s.status = 'failed' THEN '5.1.1 mailbox unknown'
         WHEN s.status = 'deferred' THEN '4.7.0 try again later' ELSE '' END,
    false, 'patient', 0, 'attachment', 0, true
FROM (
    SELECT t.i, t.j, t.owner, t.at,
        CASE WHEN t.owner = 0 AND t.j < 30 THEN (ARRAY['queued','sending','deferred'])[1 + t.j %% 3]
             ELSE (ARRAY['sent','delivered','sent','delivered','failed','sent','bounced',
                         'delivered','sent','complained'])[1 + t.j %% 10] END AS status
    FROM (
        SELECT i,
            CASE WHEN i %% %(k)s = 0 THEN 0 ELSE 1 + i %% %(others)s END AS owner,
            CASE WHEN i %% %(k)s = 0 THEN i / %(k)s ELSE i END AS j,
            %(start)s::timestamptz - make_interval(secs => i * %(spacing)s) AS at
        FROM generate_series(%(total)s - 1, 0, -1) AS i
    ) AS t
) AS s
JOIN bench_owner AS o ON o.idx = s.owner
"""


def generate(*, own: int, others: int) -> None:
    """Replace the table's rows: ``own`` for report@bench.test, ``others`` spread over
    OTHER_PRACTITIONERS practitioners, all at PER_DAY a day for the measured one."""
    from emailsettings.models import Delivery, DeliveryCount
    from psicogest.models import Invoice, Practitioner

    with connection.cursor() as cursor:
        # TRUNCATE fires no row trigger: the stored counters go with the rows (the table
        # holds only the benchmark's deliveries, see prepare()).
        cursor.execute(
            f"TRUNCATE {Delivery._meta.db_table}, {DeliveryCount._meta.db_table} CASCADE"
        )
    Invoice.objects.filter(practitioner__email__endswith="@bench.test").delete()
    Practitioner.objects.filter(email__endswith="@bench.test").delete()
    owners = [_owner("report@bench.test")]
    if others:
        owners += [_owner(f"altro{n}@bench.test") for n in range(OTHER_PRACTITIONERS)]
    k = (own + others) // own
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bench_owner "
            "(idx int, practitioner_id bigint, invoice_id bigint, patient_id bigint)"
        )
        cursor.execute("TRUNCATE bench_owner")
        for idx, (practitioner, invoice) in enumerate(owners):
            cursor.execute(
                "INSERT INTO bench_owner VALUES (%s, %s, %s, %s)",
                [idx, practitioner.pk, invoice.pk, invoice.patient_id],
            )
        # The counters' row triggers would update the same few counter rows a million
        # times in one transaction (each update walking the versions the previous ones
        # left): off for the bulk insert, then the counters are filled from the rows as
        # the migration that created them does.
        cursor.execute(f"ALTER TABLE {Delivery._meta.db_table} DISABLE TRIGGER USER")
        cursor.execute(
            _INSERT,
            {
                "k": k,
                "others": max(len(owners) - 1, 1),
                "total": own + others,
                "spacing": 86400 / (PER_DAY * k),
                "start": START,
            },
        )
        cursor.execute(f"ALTER TABLE {Delivery._meta.db_table} ENABLE TRIGGER USER")
        cursor.execute(f"DELETE FROM {DeliveryCount._meta.db_table}")
        cursor.execute(COUNTERS.BACKFILL)
        cursor.execute("VACUUM ANALYZE emailsettings_delivery")


def _owner(email: str):
    from psicogest.models import Invoice, Patient, Practitioner

    practitioner = Practitioner.objects.create_user(email, None, first_name="Bench")
    patient = Patient.objects.create(
        practitioner=practitioner, first_name="Giulia", last_name="Rossi", email="g@example.test"
    )
    invoice = Invoice.objects.create(
        practitioner=practitioner,
        patient=patient,
        number="1/2026",
        issue_date=START.date(),
        total=Decimal("80.00"),
    )
    return practitioner, invoice


def use_database(name: str) -> None:
    """Point the default connection at another database of the same server."""
    connection.close()
    connection.settings_dict["NAME"] = name
    connection.ensure_connection()


@dataclass
class Scale:
    label: str
    database: str
    own: int
    others: int
    client: Client = field(default_factory=Client)
    cases: dict[str, tuple[Callable[[], object], int]] = field(default_factory=dict)
    timings: dict[str, list[float]] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    csv_rows: int = 0


def prepare(scale: Scale) -> None:
    from emailsettings.models import Delivery
    from emailsettings.report import version
    from psicogest.models import Practitioner

    use_database(scale.database)
    call_command("migrate", verbosity=0)
    if Delivery.objects.exclude(practitioner__email__endswith="@bench.test").exists():
        sys.exit("bench/report.py empties the delivery table: use an empty database.")
    print(f"{scale.label}: generating {scale.own + scale.others:,} rows…", flush=True)
    started = time.perf_counter()
    generate(own=scale.own, others=scale.others)
    print(f"  {Delivery.objects.count():,} rows in {time.perf_counter() - started:.1f} s")
    practitioner = Practitioner.objects.get(email="report@bench.test")
    client = scale.client
    client.force_login(practitioner)

    deliveries = reverse("emailsettings:deliveries")
    export = reverse("emailsettings:deliveries_export")
    today = timezone.localtime(START).date()
    csv_from = today - datetime.timedelta(days=99)
    csv_query = {"period": "custom", "date_from": csv_from.isoformat(), "date_to": today}
    first_page = list(Delivery.objects.owned_by(practitioner).defer("body_text", "body_html")[:50])
    refresh_query = {"r": [f"{d.pk}:{version(d)}" for d in first_page]}
    refresh_query["r"][:5] = [f"{d.pk}:stale" for d in first_page[:5]]

    def get(url: str, params: dict | None = None) -> Callable[[], object]:
        def call() -> object:
            response = client.get(url, params or {})
            assert response.status_code == 200, response.status_code
            if response.streaming:
                return b"".join(response.streaming_content)
            return response.content

        return call

    scale.csv_rows = bytes(get(export, csv_query)()).count(b"\r\n") - 1  # type: ignore[arg-type]
    scale.cases = {
        "list page (30 giorni)": (get(deliveries), RUNS),
        "filtered (non riuscite, SMTP)": (
            get(deliveries, {"status": "failed", "channel": "smtp"}),
            RUNS,
        ),
        "search (q=rossi)": (get(deliveries, {"q": "rossi"}), RUNS),
        "refresh (50 ids, 5 changed)": (
            get(reverse("emailsettings:deliveries_refresh"), refresh_query),
            RUNS,
        ),
        "CSV (~10,000 rows)": (get(export, csv_query), CSV_RUNS),
        "list, period=tutto (extra)": (get(deliveries, {"period": "all"}), RUNS),
    }
    for name, (call, _runs) in scale.cases.items():
        for _ in range(3):  # warm caches
            call()
        with CaptureQueriesContext(connection) as captured:
            call()
        scale.queries[name] = len(captured)
        scale.timings[name] = []


def run_rounds(scales: list[Scale]) -> None:
    """Alternate the scales run by run, so a busy machine slows both alike."""
    names = list(scales[0].cases)
    rounds = max(runs for _call, runs in scales[0].cases.values())
    for n in range(rounds):
        for scale in scales:
            use_database(scale.database)
            for name in names:
                call, runs = scale.cases[name]
                if n >= runs:
                    continue
                started = time.perf_counter()
                call()
                scale.timings[name].append((time.perf_counter() - started) * 1000)


def main() -> None:
    global START
    if connection.vendor != "postgresql":
        sys.exit("bench/report.py needs PostgreSQL: set DATABASE_URL=postgres://…")
    # No setup_test_environment(): it instruments every template render for the test
    # client's response.context (a signal and a copy of the context per template, 150 a
    # list page), which a server never pays; the figures until 2026-12-02 included it.
    START = timezone.now()
    base = connection.settings_dict["NAME"]
    small_db = f"{base}_bench_small"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [small_db])
        if not cursor.fetchone():
            cursor.execute(f'CREATE DATABASE "{small_db}"')
    small = Scale("10,000 rows", small_db, own=10_000, others=0)
    large = Scale("1,000,000 rows", base, own=100_000, others=900_000)
    for scale in (small, large):
        prepare(scale)
    print(f"CSV rows: {small.csv_rows:,} at 10k, {large.csv_rows:,} at 1M", flush=True)
    run_rounds([small, large])

    print()
    print(
        f"{'page':32} {'10k ms':>7} {'q':>3}  {'1M ms':>7} {'q':>3}  {'ratio':>5}"
        f"  {'10k min':>7} {'1M min':>7}"
    )
    for name in small.cases:
        ms_small = statistics.median(small.timings[name])
        ms_large = statistics.median(large.timings[name])
        print(
            f"{name:32} {ms_small:7.1f} {small.queries[name]:3d}  {ms_large:7.1f}"
            f" {large.queries[name]:3d}  {ms_large / ms_small:5.2f}"
            f"  {min(small.timings[name]):7.1f} {min(large.timings[name]):7.1f}"
        )
    print("\nms: median server time (django.test.Client, in process); q: SQL queries;")
    print("ratio: median at 1M / median at 10k; min: the fastest run, for a noisy machine.")


START = timezone.now()
COUNTERS = importlib.import_module("emailsettings.migrations.0015_perf_delivery_counts")

if __name__ == "__main__":
    main()
