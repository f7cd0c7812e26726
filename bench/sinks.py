"""The SMTP sink the sending benchmarks share, and the ceiling measured against it.

Postfix's ``smtp-sink`` (C, announces PIPELINING, keeps nothing) behind ``stunnel`` for
implicit TLS with a certificate of the project's test CA: not the bottleneck. Debian
packages ``postfix`` and ``stunnel4``; ``bench/run.sh`` installs them when missing, as
``make test`` does for its services. The ceiling is a plain ``smtplib`` loop on one
connection to the same sink, with ``TCP_NODELAY`` (without it Nagle's algorithm holds the
last TLS record of each command for a delayed ACK, about 40 ms a message).
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from devtools.smtpserver import LocalCA, free_port

SMTP_SINK = "/usr/sbin/smtp-sink"
STUNNEL = "/usr/bin/stunnel4"
# Hosts the sink's certificate names: loopback and both ends of bench/wire.py's veth pair.
CERTIFICATE_HOSTS = ("localhost", "127.0.0.1", "10.203.0.1", "10.203.0.2")


def issue_certificate(ca: LocalCA) -> None:
    """The sink's certificate (``bench.pem``/``bench.key`` in the CA's directory)."""
    ca.issue("bench", CERTIFICATE_HOSTS)


@contextlib.contextmanager
def tls_sink(ca: LocalCA, *, address: str, netns: str | None = None) -> Iterator[int]:
    """smtp-sink on the (namespace's) loopback, stunnel (implicit TLS) on ``address``;
    yields stunnel's port. :func:`issue_certificate` must have run."""
    for binary in (SMTP_SINK, STUNNEL):
        if not Path(binary).exists():
            raise SystemExit(f"{binary} is missing: bench/run.sh installs postfix and stunnel4")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    sink_port, tls_port = free_port(), free_port()
    config = ca.directory / f"stunnel-{tls_port}.conf"
    config.write_text(
        "foreground = yes\npid =\n[smtps]\n"
        f"accept = {address}:{tls_port}\nconnect = 127.0.0.1:{sink_port}\n"
        f"cert = {ca.directory / 'bench.pem'}\nkey = {ca.directory / 'bench.key'}\n"
    )
    sink = subprocess.Popen(
        [*prefix, SMTP_SINK, "-u", "nobody", f"127.0.0.1:{sink_port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tunnel = subprocess.Popen(
        [*prefix, STUNNEL, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((address, tls_port), 1):
                break
            time.sleep(0.1)
        yield tls_port
    finally:
        for proc in (tunnel, sink):
            proc.terminate()
            proc.wait(timeout=10)


def smtplib_seconds(
    address: str,
    port: int,
    messages: list[tuple[str, bytes]],
    *,
    from_addr: str,
    nodelay: bool = True,
) -> float:
    """Seconds for a plain smtplib loop on one implicit-TLS connection (the ceiling when
    ``nodelay``)."""
    context = ssl.create_default_context(cafile=os.environ["EMAILSETTINGS_SMTP_EXTRA_CA_FILE"])
    started = time.perf_counter()
    with smtplib.SMTP_SSL(address, port, timeout=60, context=context) as client:
        assert client.sock is not None
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
        for recipient, data in messages:
            client.sendmail(from_addr, [recipient], data)
    return time.perf_counter() - started


@contextlib.contextmanager
def latency_relay(
    target_port: int, *, rtt_ms: float, address: str = "127.0.0.1", netns: str | None = None
) -> Iterator[int]:
    """``bench/latency_relay.py`` in its own process (inside ``netns`` when given),
    delaying each way by half ``rtt_ms`` in front of ``address:target_port``; yields its
    port on ``address``."""
    import sys

    port = free_port()
    prefix = ["ip", "netns", "exec", netns] if netns else []
    relay = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            str(Path(__file__).with_name("latency_relay.py")),
            str(port),
            str(target_port),
            f"{rtt_ms / 2:g}",
            address,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != "ready":
            raise SystemExit("the latency relay did not start")
        yield port
    finally:
        relay.terminate()
        relay.wait(timeout=10)
