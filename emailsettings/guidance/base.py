"""What every piece of advice is made of, and the small helpers its modules share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emailsettings.mailbox.presets import Preset


@dataclass(frozen=True)
class Advice:
    title: str
    text: str
    steps: tuple[str, ...] = ()
    # The failure is one Smart Mail avoids (password logins refused, domain policy).
    suggest_smart_mail: bool = False
    # The provider ("google", "microsoft") whose "Accedi con …" button solves it.
    suggest_oauth: str = ""


def has(reply: str, *needles: str) -> bool:
    lowered = reply.lower()
    return any(needle.lower() in lowered for needle in needles)


def sentence(text: str) -> str:
    """``text`` with its first letter in upper case ("il tuo provider …" → "Il tuo …")."""
    return text[:1].upper() + text[1:]


def family_of(provider: Preset | None) -> str:
    return provider.family if provider is not None else ""
