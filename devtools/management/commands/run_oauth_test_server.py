"""Run the "provider di prova" of ``make run``: a local OAuth 2.0 / OpenID Connect
authorization server (development only)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from devtools.oauthserver import serve_forever
from emailsettings import conf


class Command(BaseCommand):
    help = 'Run the local OAuth authorization server behind "Accedi con il provider di prova".'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)

    def handle(self, *args: Any, **options: Any) -> None:
        server = conf.local_test_oauth_server()
        base = conf.oauth_redirect_base_url()
        if not isinstance(server, dict):
            raise CommandError("The OAuth test server is for development only.")
        if not base:
            raise CommandError("Set EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL (make run does).")
        serve_forever(
            host=options["host"],
            port=options["port"],
            redirect_uri=base + reverse("emailsettings:oauth_callback"),
            client_id=str(server["client_id"]),
            client_secret=str(server["client_secret"]),
        )
