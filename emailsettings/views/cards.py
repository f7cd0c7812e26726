"""The cards of the "Impostazioni email" page and the messages addressed to one of them.

A save, a check or a delete answers inside the card it concerns ("Mail di accompagnamento
salvata." under the cover-mail title, announced by its ``role="status"`` area), not at the
top of the page: views add their message with :func:`card_message`, and the page hands each
card its own (:func:`messages_by_card`). Messages without a card stay at the top.

A refused save redirects too (post/redirect/get, so the browser never stays on the POST URL
and a reload does not post again): :func:`refuse` keeps what was typed in the session, never a
password, and the card's ``section_context`` rebuilds its bound form with
:func:`refused_data`, whose validation shows the same errors again.

To add a card: a key here, its ``_card_status.html`` include in the card's template.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse

# Card key → the id of the card's <section> (the anchor a redirect jumps to).
CARDS: dict[str, str] = {
    "covermail": "covermail",
    "channel": "channel",
    "sender_domain": "sender-domain",
    "smtp": "smtp",
    # The mailbox-reading option, inside the SMTP card.
    "reading": "smtp-reading",
    "options": "sending-options",
}


def card_message(request: HttpRequest, card: str, level: int, text: str) -> None:
    """A message shown in ``card`` on the next settings page."""
    if card not in CARDS:
        raise ValueError(f"Unknown card {card!r}")
    messages.add_message(request, level, text, extra_tags=card)


# Never kept between requests, even for a moment.
_NOT_KEPT = ("csrfmiddlewaretoken", "password")


def _session_key(card: str) -> str:
    return f"emailsettings:refused:{card}"


def card_url(card: str) -> str:
    return reverse("emailsettings:settings") + "#" + CARDS[card]


def refuse(request: HttpRequest, card: str, data: QueryDict) -> HttpResponse:
    """Back to the settings page after a refused save of ``card``, keeping what was typed."""
    kept = {key: data.getlist(key) for key in data if key not in _NOT_KEPT}
    request.session[_session_key(card)] = {
        "data": kept,
        "password_typed": bool(data.get("password")),
    }
    return redirect(card_url(card))


def refused_data(request: HttpRequest, card: str) -> tuple[QueryDict, bool] | None:
    """What was typed in ``card`` before its save was refused (once), and whether a password
    had been typed (it is not kept: the user types it again)."""
    stash = request.session.pop(_session_key(card), None)
    if not isinstance(stash, dict):
        return None
    data = QueryDict(mutable=True)
    for key, values in dict(stash.get("data") or {}).items():
        data.setlist(key, [str(value) for value in values])
    return data, bool(stash.get("password_typed"))


def messages_by_card(request: HttpRequest) -> tuple[dict[str, list[Any]], list[Any]]:
    """The pending messages, per card and for the top of the page (consumed)."""
    cards: dict[str, list[Any]] = {card: [] for card in CARDS}
    page: list[Any] = []
    for message in messages.get_messages(request):
        target = cards.get(message.extra_tags)
        (target if target is not None else page).append(message)
    return cards, page
