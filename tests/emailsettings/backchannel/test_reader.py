"""The mailbox reader (``backchannel/reader.py``) against the local test server's IMAP side:
what it searches for, at any hour and whatever the server's time zone."""

from __future__ import annotations

import datetime

import pytest
import time_machine

from emailsettings.backchannel import reader
from emailsettings.models import DeliveryStatus, SmtpAccount
from tests.support.devmail import USER, send_invoices_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(local_mailbox) -> SmtpAccount:
    return local_mailbox


def _next_utc_half_past_midnight() -> datetime.datetime:
    # The test CA's certificates are valid from a day before they were made: travel forward.
    now = datetime.datetime.now(datetime.UTC)
    moment = now.replace(hour=0, minute=30, second=0, microsecond=0)
    return moment + datetime.timedelta(days=1)


def test_a_bounce_dated_yesterday_by_a_server_west_of_utc_is_read(
    local_mail_server, account, practitioner
):
    """Sent at 00:30 UTC; the server keeps its dates in New York time, where the bounce
    arrived the evening before. IMAP SINCE compares the server's own dates, so the reader
    searches from the day before its oldest send."""
    with time_machine.travel(_next_utc_half_past_midnight(), tick=True):
        bounced, fine = send_invoices_now(
            practitioner, "davide.conti@rimbalza.test", "giulia@example.test"
        )
        [report] = local_mail_server.wait_for(1)
        new_york = datetime.timezone(datetime.timedelta(hours=-5))
        [stored] = local_mail_server.store.messages(USER)
        stored.internal_date = stored.internal_date.astimezone(new_york)
        assert stored.internal_date.date() < bounced.sent_at.date()

        result = reader.read_mailbox(account)

    assert result.ok and result.bounces == 1
    bounced.refresh_from_db()
    fine.refresh_from_db()
    assert bounced.status == DeliveryStatus.BOUNCED
    assert fine.status == DeliveryStatus.SENT
