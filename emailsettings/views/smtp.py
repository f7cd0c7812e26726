"""Section "Configurazione SMTP personale" of the settings page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def section_context(request: HttpRequest, **overrides: Any) -> dict[str, Any]:
    return {}
