"""A local stand-in for the suppression APIs of Postmark, SendGrid, Mailgun and Brevo: a real
HTTP server on a thread that keeps each ESP's suppressed addresses, checks the credentials
each API expects and answers in its shape (as documented by each ESP):

- Postmark ``POST /message-streams/<stream>/suppressions/delete`` (``X-Postmark-Server-Token``)
  → 200 ``{"Suppressions": [{"EmailAddress", "Status": "Deleted"}]}``;
- SendGrid ``DELETE /v3/suppression/bounces/<email>`` (``Authorization: Bearer``) → 204;
- Mailgun ``DELETE /v3/<domain>/bounces/<address>`` (basic auth ``api:<key>``) → 200;
- Brevo ``DELETE /v3/smtp/blockedContacts/<email>`` (``api-key``) → 204.

An address the ESP does not hold gives 404 (Postmark: ``"Status": "Failed"``); a wrong key
401. ``fail_with`` makes every call answer that status (an ESP outage).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

KEY = "chiave-api-di-prova"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _answer(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        standin.calls.append((self.command, self.path))
        if standin.fail_with:
            self._answer(standin.fail_with, {"message": "unavailable"})
            return
        path = self.path
        if match := re.fullmatch(r"/postmark/message-streams/([^/]+)/suppressions/delete", path):
            if self.headers.get("X-Postmark-Server-Token") != KEY:
                self._answer(401, {"ErrorCode": 10, "Message": "bad token"})
                return
            results = []
            for item in json.loads(body)["Suppressions"]:
                address = item["EmailAddress"]
                held = standin.suppressed["postmark"]
                status = "Deleted" if address in held else "Failed"
                held.discard(address)
                results.append({"EmailAddress": address, "Status": status, "Message": None})
            self._answer(200, {"Suppressions": results})
            return
        routes = (
            ("sendgrid", r"/sendgrid/v3/suppression/bounces/([^/]+)", 204),
            ("mailgun", r"/mailgun/v3/[^/]+/bounces/([^/]+)", 200),
            ("brevo", r"/brevo/v3/smtp/blockedContacts/([^/]+)", 204),
        )
        for esp, pattern, ok in routes:
            match = re.fullmatch(pattern, path)
            if match is None or self.command != "DELETE":
                continue
            if not self._authorised(esp):
                self._answer(401, {"message": "unauthorised"})
                return
            address = unquote(match.group(1))
            held = standin.suppressed[esp]
            if address not in held:
                self._answer(404, {"message": "not found"})
                return
            held.discard(address)
            self._answer(ok, None if ok == 204 else {"message": "removed", "address": address})
            return
        self._answer(404, {"message": "no such route"})

    def _authorised(self, esp: str) -> bool:
        if esp == "sendgrid":
            return self.headers.get("Authorization") == f"Bearer {KEY}"
        if esp == "brevo":
            return self.headers.get("api-key") == KEY
        expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
        return self.headers.get("Authorization") == expected

    do_POST = _handle  # noqa: N815
    do_DELETE = _handle  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: EspApiStandIn


class EspApiStandIn:
    def __init__(self) -> None:
        self.suppressed: dict[str, set[str]] = {
            esp: set() for esp in ("postmark", "sendgrid", "mailgun", "brevo")
        }
        self.calls: list[tuple[str, str]] = []
        self.fail_with = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, esp: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{esp}/"

    def __enter__(self) -> EspApiStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
