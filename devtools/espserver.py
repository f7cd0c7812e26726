"""A local stand-in for an ESP's send API, with the Postmark API shape, for tests and benchmarks.

``POST /email`` (and ``/email/batch``) with a JSON body answers ``200`` with a Postmark-style
``MessageID`` after ``delay`` seconds, like a real ESP that takes a while to accept a
message. The server speaks HTTP/1.1 with keep-alive and serves each connection on a thread of
its own (several workers may post at the same time); it counts the TCP connections it
accepted and the messages it took, which is what a test or a benchmark wants to know about
connection reuse, the most requests it answered at once (``peak``), and it keeps each
message's JSON (``payloads``) for tests that check what the ESP received. ``refuse(address)``
answers mail to that address as Postmark answers an inactive (suppressed) recipient. Point
anymail's Postmark backend at it through settings alone::

    ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test", "POSTMARK_API_URL": esp.url}

    with EspStandIn(delay=0.05) as esp:       # in a thread (tests)
        ...                                   # esp.connections, esp.messages

``python -m devtools.espserver PORT DELAY`` runs it in a process of its own (benchmarks, so it
does not share the GIL with the client): it prints ``ready``, then answers ``stats`` on stdin
with "connections messages". Only the standard library: no Django.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.messages = 0
        # Requests being answered right now, and the most there ever were at once.
        self.running = 0
        self.peak = 0
        # Every message as the ESP received it (the JSON object): what tests look into.
        self.payloads: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says "Connection: close"
    # Without it the answer's second write waits for the client's delayed ACK (Nagle's
    # algorithm): about 40 ms an answer on loopback, more than the ESP's own delay.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.counters.lock:
            self.server.counters.connections += 1

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            data: Any = json.loads(body or b"{}")
        except ValueError:
            self._answer(422, {"ErrorCode": 402, "Message": "Invalid JSON"})
            return
        if self.path.rstrip("/").endswith("/email/batch"):
            items = data if isinstance(data, list) else []
        elif self.path.rstrip("/").endswith("/email"):
            items = [data]
        else:
            self._answer(404, {"ErrorCode": 404, "Message": "Not found"})
            return
        inactive = [
            str(item.get("To", ""))
            for item in items
            if isinstance(item, dict) and str(item.get("To", "")).lower() in self.server.inactive
        ]
        with self.server.counters.lock:
            self.server.counters.running += 1
            self.server.counters.peak = max(self.server.counters.peak, self.server.counters.running)
        try:
            if self.server.delay:
                time.sleep(self.server.delay)
        finally:
            with self.server.counters.lock:
                self.server.counters.running -= 1
        if inactive and not isinstance(data, list):
            # Postmark's answer for a suppressed recipient (HTTP 422, ErrorCode 406).
            self._answer(
                422,
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been marked as "
                    f"inactive. Found inactive addresses: {', '.join(inactive).lower()}. "
                    "Inactive recipients are ones that have generated a hard bounce, a spam "
                    "complaint, or a manual suppression.",
                },
            )
            return
        answers = [self._accepted(item) for item in items]
        with self.server.counters.lock:
            self.server.counters.messages += len(answers)
            self.server.counters.payloads.extend(item for item in items if isinstance(item, dict))
        self._answer(200, answers if isinstance(data, list) else answers[0])

    @staticmethod
    def _accepted(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "To": item.get("To", ""),
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many workers connecting at once must not be refused by a short listen queue.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, delay: float) -> None:
        super().__init__(address, _Handler)
        self.delay = delay
        self.counters = _Counters()
        # Addresses (lower case) answered as Postmark answers an inactive recipient.
        self.inactive: set[str] = set()


class EspStandIn:
    """The stand-in on 127.0.0.1 (a free port unless given), served by a thread."""

    def __init__(self, *, delay: float = 0.0, port: int = 0) -> None:
        self.server = _Server(("127.0.0.1", port), delay=delay)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def connections(self) -> int:
        return self.server.counters.connections

    @property
    def messages(self) -> int:
        return self.server.counters.messages

    @property
    def peak(self) -> int:
        """The most requests it was answering at the same time."""
        return self.server.counters.peak

    def refuse(self, address: str) -> None:
        """Answer messages to ``address`` as Postmark answers an inactive recipient."""
        self.server.inactive.add(address.lower())

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """The messages received so far, each the JSON object posted for it."""
        with self.server.counters.lock:
            return list(self.server.counters.payloads)

    def start(self) -> EspStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> EspStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    port, delay = int(argv[0]), float(argv[1]) if len(argv) > 1 else 0.05
    esp = EspStandIn(delay=delay, port=port).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        for line in sys.stdin:
            if line.strip() == "stats":
                sys.stdout.write(f"{esp.connections} {esp.messages}\n")
                sys.stdout.flush()
    finally:
        esp.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
