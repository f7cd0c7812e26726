"""The after-send rule (``outbox/lifecycle.py``, ``AFTER_SEND_RULE``): what news from an ESP
webhook, a bounce read in the mailbox or a PEC receipt does to a delivery, as the report
then shows it. The same table is printed in ``docs/architecture.md``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emailsettings.models import DeliveryEvent, DeliveryStatus, SuppressedAddress
from emailsettings.outbox import lifecycle
from emailsettings.outbox.lifecycle import AFTER_SEND_RULE, News, Source, apply_news
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

S = DeliveryStatus
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("source", "news", "before", "after", "suppressed"),
    [
        # The ESP's own later word overrides its "delivered".
        (Source.WEBHOOK, News.BOUNCED, S.DELIVERED, S.BOUNCED, "bounced"),
        (Source.WEBHOOK, News.COMPLAINED, S.BOUNCED, S.COMPLAINED, "complained"),
        # A PEC receipt of delivery is the legal proof: a later bounce or non-delivery
        # notice is only a timeline note, and the address stays usable.
        (Source.MAILBOX, News.BOUNCED, S.DELIVERED, S.DELIVERED, None),
        (Source.PEC, News.FAILED, S.DELIVERED, S.DELIVERED, None),
        # News never makes a row look better.
        (Source.WEBHOOK, News.DELIVERED, S.BOUNCED, S.BOUNCED, None),
        (Source.PEC, News.DELIVERED, S.FAILED, S.FAILED, None),
        # The usual news on a sent row.
        (Source.MAILBOX, News.BOUNCED, S.SENT, S.BOUNCED, "bounced"),
        (Source.PEC, News.DELIVERED, S.UNKNOWN, S.DELIVERED, None),
        (Source.PEC, News.FAILED, S.SENT, S.FAILED, None),
        (Source.WEBHOOK, News.NOTE, S.SENT, S.SENT, None),
    ],
)
def test_news_after_sending_moves_the_row_as_the_rule_says(source, news, before, after, suppressed):
    delivery = DeliveryFactory(status=before)

    effect = apply_news(delivery.pk, source=source, news=news, text="notizia")

    assert effect is not None
    delivery.refresh_from_db()
    assert delivery.status == after
    [event] = DeliveryEvent.objects.filter(delivery=delivery)
    assert (event.status, event.text) == (after, "notizia")
    reasons = list(SuppressedAddress.objects.values_list("reason", flat=True))
    assert reasons == ([suppressed] if suppressed else [])


@pytest.mark.parametrize(
    ("source", "news", "status"),
    [
        (Source.WEBHOOK, News.DELIVERED, S.QUEUED),
        (Source.MAILBOX, News.BOUNCED, S.SENDING),
        (Source.PEC, News.DELIVERED, S.CANCELLED),
        # The same bounce read again is the same news: nothing more on the timeline.
        (Source.MAILBOX, News.BOUNCED, S.BOUNCED),
    ],
)
def test_news_that_does_not_apply_leaves_no_trace(source, news, status):
    delivery = DeliveryFactory(status=status)

    assert apply_news(delivery.pk, source=source, news=news, text="notizia") is None

    delivery.refresh_from_db()
    assert delivery.status == status
    assert not DeliveryEvent.objects.filter(delivery=delivery).exists()
    assert not SuppressedAddress.objects.exists()


def test_every_target_of_the_rule_is_a_status_news_can_land_on():
    for cells in AFTER_SEND_RULE.values():
        for status, effect in cells.items():
            assert status in lifecycle.FINISHED, status
            assert effect.to is None or effect.to in lifecycle.FINISHED, effect


def _cell(effect: lifecycle.Effect | None) -> str:
    if effect is None:
        return "—"
    text = f"→ {effect.to}" if effect.to else "note"
    return f"{text}, suppress" if effect.suppress else text


def rule_table() -> str:
    """The rule as the Markdown table ``docs/architecture.md`` prints."""
    columns = [S.SENT, S.UNKNOWN, S.DELIVERED, S.BOUNCED, S.COMPLAINED, S.FAILED]
    lines = [
        "| source | news | " + " | ".join(str(c) for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for (source, news), cells in AFTER_SEND_RULE.items():
        row = [Source(source).label, News(news).label, *(_cell(cells.get(c)) for c in columns)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def test_the_architecture_doc_prints_the_rule_as_the_code_has_it():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    found = re.search(r"<!-- after-send-rule -->\n(.*?)\n<!-- /after-send-rule -->", doc, re.S)
    assert found, "docs/architecture.md lacks the after-send table markers"
    assert found.group(1).strip() == rule_table(), (
        "docs/architecture.md's after-send table differs from AFTER_SEND_RULE; paste:\n"
        + rule_table()
    )
