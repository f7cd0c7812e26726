"""Run the local SMTP test server used by ``make run`` (development only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from psicogest.devsmtp import serve_forever


class Command(BaseCommand):
    help = "Run an SMTP server with STARTTLS that stores what it receives under var/devsmtp/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("The SMTP test server is for development only.")
        serve_forever(
            directory=Path(settings.VAR_DIR) / "devsmtp", host=options["host"], port=options["port"]
        )
