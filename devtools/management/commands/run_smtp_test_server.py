"""Run the local SMTP test server used by ``make run`` (development only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.oauthserver import remote_bearer_check
from devtools.smtpserver import serve_forever
from emailsettings.conf import local_test_oauth_server


class Command(BaseCommand):
    help = (
        "Run an SMTP server with STARTTLS that stores what it receives under var/devsmtp/, "
        "and optionally its IMAP side (the senders' mailboxes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument(
            "--imap-port",
            type=int,
            default=None,
            help="also serve the mailboxes over IMAP (SSL) on this port",
        )
        parser.add_argument(
            "--notice-delay",
            type=float,
            default=20.0,
            help="seconds before a bounce or a PEC delivery receipt reaches the sender",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("The SMTP test server is for development only.")
        serve_forever(
            directory=Path(settings.VAR_DIR) / "devsmtp",
            host=options["host"],
            port=options["port"],
            imap_port=options["imap_port"],
            notice_delay=options["notice_delay"],
            xoauth2=self._provider_di_prova(),
        )

    @staticmethod
    def _provider_di_prova() -> Callable[[str, str], bool] | None:
        """AUTH XOAUTH2 with the tokens of make run's provider di prova, when it is set."""
        server = local_test_oauth_server()
        if not isinstance(server, dict):
            return None
        return remote_bearer_check(
            str(server["url"]),
            client_id=str(server["client_id"]),
            client_secret=str(server["client_secret"]),
        )
