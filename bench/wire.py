"""Benchmark of the SMTP wire: TCP_NODELAY, PIPELINING, and the cost of one delivery.

The sink is Postfix's ``smtp-sink`` (C, announces PIPELINING) behind ``stunnel`` for TLS
(implicit TLS, a certificate from the project's test CA): not the bottleneck. Debian
packages ``postfix`` and ``stunnel4``; ``bench/run.sh`` installs them when missing, as
``make test`` does for its services. The same 40 KB invoices go, on one connection each:

* plain ``smtplib`` without and with ``TCP_NODELAY`` (the ceiling);
* the product's SMTP layer (``emailsettings.mailbox.smtp``: guarded connection, ``send_message``),
  with and without PIPELINING;
* the whole in-process pipeline, ``send_batch`` (claim → send → record in PostgreSQL), as
  one worker process runs it: msg/s, SQL statements and CPU ms per delivery.

Then the same at 30 ms round-trip time: the sink and stunnel run in a network namespace
reached through a veth pair with ``tc netem`` (15 ms each way), which the benchmark
creates and removes itself (root). Where the kernel has no ``sch_netem`` it says so and
puts ``bench/latency_relay.py`` in the same namespace instead, on its side of the veth pair,
delaying every byte 15 ms each way (it terminates TCP: the replies' wait is real, TCP's own
pace is the veth's). Where namespaces are not allowed it says why and skips that part: the
latency is never added on the shared loopback.

Run: ``bench/run.sh bench/wire.py [--messages 300] [--latency-messages 60]``.
Figures only, with their targets; never a timed assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import send_batch as base  # noqa: E402  (Django set up, the 40 KB invoices, bench rows)
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from sinks import issue_certificate, latency_relay, smtplib_seconds, tls_sink  # noqa: E402

from devtools.smtpserver import LocalCA  # noqa: E402
from emailsettings.covermail.message import build_message, message_bytes  # noqa: E402
from emailsettings.mailbox import smtp  # noqa: E402
from emailsettings.mailbox import transaction as smtpsend  # noqa: E402
from emailsettings.models import Delivery, DeliveryStatus, SmtpAccount  # noqa: E402
from emailsettings.outbox.queueing import queue_invoice_emails  # noqa: E402
from emailsettings.outbox.worker import send_batch  # noqa: E402

NETNS = "psicogest-bench"
HOST_SIDE, NS_SIDE = "10.203.0.1", "10.203.0.2"
TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def latency(rtt_ms: float) -> Iterator[str]:
    """A namespace behind a veth pair, delaying each way by half ``rtt_ms`` with netem;
    yields "netem", "relay" (the namespace, but no ``sch_netem``: the caller relays inside
    it) or "" (no namespace allowed), with the reason printed."""
    half = f"{rtt_ms / 2:g}ms"
    namespace = [
        ("ip", "netns", "add", NETNS),
        ("ip", "link", "add", "psgb0", "type", "veth", "peer", "name", "psgb1"),
        ("ip", "link", "set", "psgb1", "netns", NETNS),
        ("ip", "addr", "add", f"{HOST_SIDE}/24", "dev", "psgb0"),
        ("ip", "link", "set", "psgb0", "up"),
        ("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_SIDE}/24", "dev", "psgb1"),
        ("ip", "netns", "exec", NETNS, "ip", "link", "set", "psgb1", "up"),
        ("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"),
    ]
    netem = [
        ("tc", "qdisc", "add", "dev", "psgb0", "root", "netem", "delay", half, "limit", "100000"),
        ("ip", "netns", "exec", NETNS, "tc", "qdisc", "add", "dev", "psgb1", "root", "netem")
        + ("delay", half, "limit", "100000"),
    ]

    def failure(err: Exception) -> str:
        detail = getattr(err, "stderr", b"") or b""
        reason = detail.decode(errors="replace").strip() or str(err)
        return f"`{' '.join(getattr(err, 'cmd', None) or ())}`: {reason}"

    mode = "netem"
    try:
        try:
            for step in namespace:
                run(*step)
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            print(
                "\n30 ms RTT: not measured — this machine does not allow the network namespace"
                f" and veth pair it needs ({failure(err)}); that needs root and iproute2."
            )
            mode = ""
        if mode:
            try:
                for step in netem:
                    run(*step)
            except (subprocess.CalledProcessError, FileNotFoundError) as err:
                print(
                    f"\n30 ms RTT with netem: not possible here ({failure(err)}; the kernel"
                    " has no sch_netem). Measured through bench/latency_relay.py instead, run"
                    " inside the namespace on its side of the veth pair."
                )
                mode = "relay"
        yield mode
    finally:
        subprocess.run(["ip", "link", "del", "psgb0"], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def product_seconds(
    address: str,
    port: int,
    messages: list[tuple[str, bytes]],
    *,
    pipelining: bool,
    security: str = "ssl",
    username: str = "",
    password: str = "",
    from_addr: str = base.MAILBOX,
) -> float:
    settings.EMAILSETTINGS_SMTP_PIPELINING = pipelining
    started = time.perf_counter()
    client = smtp.open_connection(
        host=address, port=port, security=security, username=username, password=password
    )
    try:
        for recipient, data in messages:
            smtpsend.send_message(client, message=data, from_addr=from_addr, to_addrs=[recipient])
    finally:
        smtp.close_quietly(client)
        settings.EMAILSETTINGS_SMTP_PIPELINING = True
    return time.perf_counter() - started


def pipeline(practitioner: object, address: str, port: int, count: int) -> dict[str, float]:
    """send_batch in process for ``count`` fresh deliveries: rate, statements, CPU."""
    SmtpAccount.objects.filter(practitioner=practitioner).update(
        host=address, port=port, security="ssl", username=""
    )
    invoices = list(base.Invoice.objects.filter(practitioner=practitioner).order_by("pk")[:count])
    Delivery.objects.filter(practitioner=practitioner).delete()
    ids = [d.pk for d in queue_invoice_emails(invoices)]
    cpu, wall = time.process_time(), time.perf_counter()
    with CaptureQueriesContext(connection) as captured:
        if os.environ.get("BENCH_PROFILE"):  # a cProfile of the first measurement
            import cProfile

            cProfile.runctx(
                "send_batch(delivery_ids=ids, time_budget=3600)",
                globals(),
                {"ids": ids, "send_batch": send_batch},
                os.environ.pop("BENCH_PROFILE"),
            )
        else:
            send_batch(delivery_ids=ids, time_budget=3600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENT).count()
    statements = [q for q in captured.captured_queries if not TRANSACTION_CONTROL.match(q["sql"])]
    return {
        "sent": sent,
        "rate": sent / wall,
        "statements": len(statements) / max(sent, 1),
        "round_trips": len(captured.captured_queries) / max(sent, 1),
        "cpu_ms": 1000 * cpu / max(sent, 1),
    }


def section(title: str, address: str, port: int, messages: list, practitioner: object) -> None:
    rate: Callable[[float], float] = lambda seconds: len(messages) / seconds  # noqa: E731
    plain = rate(smtplib_seconds(address, port, messages, from_addr=base.MAILBOX, nodelay=False))
    ceiling = rate(smtplib_seconds(address, port, messages, from_addr=base.MAILBOX))
    sequential = rate(product_seconds(address, port, messages, pipelining=False))
    pipelined = rate(product_seconds(address, port, messages, pipelining=True))
    batch = pipeline(practitioner, address, port, len(messages))
    print(f"\n{title} — {len(messages)} messages of 40 KB, one TLS connection each run")
    print(f"  smtplib, Nagle on (no TCP_NODELAY)       {plain:8.1f} msg/s")
    print(f"  smtplib + TCP_NODELAY (the ceiling)      {ceiling:8.1f} msg/s")
    print(f"  product SMTP layer, no PIPELINING        {sequential:8.1f} msg/s")
    print(
        f"  product SMTP layer, PIPELINING           {pipelined:8.1f} msg/s"
        f"  = {pipelined / ceiling:.2f}× smtplib (target ≥ 1.5× at 30 ms)"
    )
    print(
        f"  send_batch, one process (DB included)    {batch['rate']:8.1f} msg/s"
        f"  = {batch['rate'] / ceiling:.2f}× ceiling (target ≥ 0.8×)"
    )
    print(
        f"  SQL statements per delivery              {batch['statements']:8.1f}"
        f"  (target ≤ 5; with BEGIN/COMMIT {batch['round_trips']:.1f})"
    )
    print(f"  CPU per delivery (send_batch process)    {batch['cpu_ms']:8.1f} ms")


def smtplib_submission_seconds(
    address: str, port: int, messages: list[tuple[str, bytes]], *, username: str, password: str
) -> float:
    """A plain smtplib loop with ``TCP_NODELAY``: STARTTLS and AUTH on one connection."""
    context = ssl.create_default_context(cafile=os.environ["EMAILSETTINGS_SMTP_EXTRA_CA_FILE"])
    started = time.perf_counter()
    with smtplib.SMTP(address, port, timeout=60) as client:
        assert client.sock is not None
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.starttls(context=context)
        client.login(username, password)
        for recipient, data in messages:
            client.sendmail(username, [recipient], data)
    return time.perf_counter() - started


def postfix_section(ca: LocalCA, messages: list[tuple[str, bytes]]) -> None:
    """The same messages to a real MTA: Postfix smtpd on its submission port (STARTTLS
    required, AUTH through Dovecot SASL) delivering to a local maildir — the private
    Postfix + Dovecot of the tests (``tests/support/mta_fixtures.py``), never relaying."""
    sys.path.insert(0, str(base.ROOT))
    from tests.support.mta_fixtures import MTA_PATIENT, PostfixMTA

    # Its own temporary directory, as the tests' fixture makes it: the daemons'
    # unprivileged processes must reach it (the benchmark's work directory is 0700).
    directory = Path(tempfile.mkdtemp(prefix="psicogest-bench-mta-"))
    mta = PostfixMTA(ca=ca, directory=directory).start()
    try:
        mail = [(MTA_PATIENT, data) for _recipient, data in messages]
        login = {"username": mta.user, "password": mta.password}
        host, port = mta.host, mta.submission_port
        ceiling = len(mail) / smtplib_submission_seconds(host, port, mail, **login)
        product = {
            flag: len(mail)
            / product_seconds(
                host, port, mail, pipelining=flag, security="starttls", from_addr=mta.user, **login
            )
            for flag in (False, True)
        }
        print(
            f"\nPostfix smtpd (STARTTLS + AUTH, Dovecot SASL, local delivery) — {len(mail)}"
            " messages of 40 KB, one connection each run"
        )
        print(f"  smtplib + TCP_NODELAY (the ceiling)      {ceiling:8.1f} msg/s")
        print(f"  product SMTP layer, no PIPELINING        {product[False]:8.1f} msg/s")
        print(
            f"  product SMTP layer, PIPELINING           {product[True]:8.1f} msg/s"
            f"  = {product[True] / ceiling:.2f}× smtplib"
        )
    finally:
        mta.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--latency-messages", type=int, default=60)
    args = parser.parse_args()
    base.prepare_services(worker=False)
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = True
    ca = LocalCA.create(base.WORK / "ca")
    issue_certificate(ca)
    count = max(args.messages, args.latency_messages)
    print(f"Preparing {count} invoices with 40 KB PDFs…", flush=True)
    practitioner, invoices = base.prepare(count, SimpleNamespace(port=465))
    try:
        rows = queue_invoice_emails(invoices)
        messages = [(d.recipient, message_bytes(build_message(d))) for d in rows]
        Delivery.objects.filter(practitioner=practitioner).delete()
        with tls_sink(ca, address="127.0.0.1") as port:
            section(
                "Loopback (no added latency)",
                "127.0.0.1",
                port,
                messages[: args.messages],
                practitioner,
            )
        postfix_section(ca, messages[: args.messages])
        if not args.latency_messages:
            return
        with latency(30) as mode:
            if mode == "netem":
                with tls_sink(ca, address=NS_SIDE, netns=NETNS) as port:
                    section(
                        "30 ms RTT (netns + veth + netem)",
                        NS_SIDE,
                        port,
                        messages[: args.latency_messages],
                        practitioner,
                    )
            elif mode == "relay":
                with (
                    tls_sink(ca, address=NS_SIDE, netns=NETNS) as port,
                    latency_relay(port, rtt_ms=30, address=NS_SIDE, netns=NETNS) as relayed,
                ):
                    section(
                        "30 ms RTT (netns + veth + userspace relay, 15 ms each way; no netem)",
                        NS_SIDE,
                        relayed,
                        messages[: args.latency_messages],
                        practitioner,
                    )
    finally:
        base.remove_bench_rows()
        shutil.rmtree(base.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
