"""The cards of the "Impostazioni email" page and the messages addressed to one of them.

A save, a check or a delete answers inside the card it concerns ("Mail di accompagnamento
salvata." under the cover-mail title, announced by its ``role="status"`` area), not at the
top of the page: views add their message with :func:`card_message`, and the page hands each
card its own (:func:`messages_by_card`). Messages without a card stay at the top.

To add a card: a key here, its ``_card_status.html`` include in the card's template.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest

# Card key → the id of the card's <section> (the anchor a redirect jumps to).
CARDS: dict[str, str] = {
    "covermail": "covermail",
    "channel": "channel",
    "sender_domain": "sender-domain",
    "smtp": "smtp",
}


def card_message(request: HttpRequest, card: str, level: int, text: str) -> None:
    """A message shown in ``card`` on the next settings page."""
    if card not in CARDS:
        raise ValueError(f"Unknown card {card!r}")
    messages.add_message(request, level, text, extra_tags=card)


def messages_by_card(request: HttpRequest) -> tuple[dict[str, list[Any]], list[Any]]:
    """The pending messages, per card and for the top of the page (consumed)."""
    cards: dict[str, list[Any]] = {card: [] for card in CARDS}
    page: list[Any] = []
    for message in messages.get_messages(request):
        target = cards.get(message.extra_tags)
        (target if target is not None else page).append(message)
    return cards, page
