"""The bytes of a delivery's message: what Django's SMTP backend would write, built with less
work (``emailsettings.covermail.message.mime_bytes``)."""

from __future__ import annotations

from email.generator import Generator
from types import SimpleNamespace

import pytest

from emailsettings.covermail.message import build_message, mime_bytes


def delivery(**changes):
    values = {
        "message_id": "<0f1e2d@psicogest.test>",
        "subject": "Fattura 12/2026 — Studio Rossi",
        "body_text": "Gentile Mario Rossi,\n\nin allegato la fattura di € 80,00.\n",
        "body_html": "<p>Gentile Mario Rossi,</p><p>in allegato la fattura di € 80,00.</p>",
        "from_header": '"Dott.ssa Maria Rossi via PsicoGest" <fatture@psicogest.test>',
        "recipient": "mario.rossi@example.test",
        "reply_to": '"Dott.ssa Maria Rossi" <maria@studio.test>',
        "invoice_number": "12/2026",
        "invoice": None,
    }
    return SimpleNamespace(**{**values, **changes})


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 160


@pytest.mark.parametrize("html", [True, False])
def test_the_bytes_are_those_of_djangos_generator(html):
    message = build_message(delivery() if html else delivery(body_html=""), pdf=PDF)
    mime = message.message()

    data = mime_bytes(mime)

    # With the boundaries now set on the message, Django's own generator writes the same.
    assert data == mime.as_bytes(linesep="\r\n")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


def test_a_boundary_found_in_a_text_part_is_replaced(monkeypatch):
    taken = "===============1234567890123456789=="
    fresh = iter([taken, "===============1==", "===============2=="])
    monkeypatch.setattr(
        Generator, "_make_boundary", classmethod(lambda cls, text=None: next(fresh))
    )
    message = build_message(delivery(body_text=f"--{taken}\n"), pdf=PDF)

    data = mime_bytes(message.message())

    # Two multipart parts (mixed, alternative): neither takes the boundary the text contains.
    assert f'boundary="{taken}"'.encode() not in data
    assert b'boundary="===============1=="' in data
    assert b'boundary="===============2=="' in data
