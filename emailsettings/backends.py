"""Email backends for the embedded default."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from psicogest.files import write_atomically


class EmlFileBackend(BaseEmailBackend):
    """Writes each message as one ``.eml`` file under ``EMAIL_FILE_PATH``.

    Stands in for an ESP when none is configured, so Smart Mail can be tried locally.
    """

    def __init__(self, *, file_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file_path = Path(file_path or settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        self.file_path.mkdir(parents=True, exist_ok=True)
        count = 0
        for message in email_messages:
            # Whole or not at all: a full disk leaves no truncated or empty .eml behind, and
            # the error (an OSError) reaches the sender, which files it as a disk problem.
            data = message.message().as_bytes(linesep="\r\n")
            write_atomically(self.file_path / f"{uuid.uuid4().hex}.eml", data)
            count += 1
        return count
