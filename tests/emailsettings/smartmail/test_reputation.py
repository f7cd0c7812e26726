"""A practitioner's Smart Mail reputation: rolling windows of unique recipients, a minimum
volume before a rate counts, the worst window wins, a suspension stays until lifted."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from emailsettings.models import Reputation, ReputationState
from emailsettings.smartmail import reputation
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 12, 7, 23, 30, tzinfo=datetime.UTC)


def sends(practitioner, *, count, status="delivered", days_ago=1.0, channel="smart_mail"):
    """``count`` Smart Mail messages to ``count`` different patients, sent ``days_ago``."""
    rows = []
    for _n in range(count):
        invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
        rows.append(
            DeliveryFactory(
                invoice=invoice,
                status=status,
                channel=channel,
                sent_at=NOW - datetime.timedelta(days=days_ago),
            )
        )
    return rows


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.mark.parametrize(
    ("delivered", "bounced", "complained", "expected"),
    [
        (38, 0, 0, ReputationState.REGULAR),
        # 3 of 41 bounced: 7.3 % — at risk (4 %) but not suspended (8 %).
        (38, 3, 0, ReputationState.AT_RISK),
        (36, 4, 0, ReputationState.SUSPENDED),  # 4 of 40: 10 %
        # Two bounces out of three sends: too few recipients for the rate to count.
        (1, 2, 0, ReputationState.REGULAR),
        # One complaint in 40 is 2.5 %, but one address is no pattern.
        (39, 0, 1, ReputationState.REGULAR),
        (38, 0, 2, ReputationState.SUSPENDED),  # 2 of 40: 5 % > 0.3 %
        (19, 1, 0, ReputationState.REGULAR),  # 1 bounce: below the minimum events
    ],
)
def test_states_follow_the_thresholds_with_a_minimum_volume(
    practitioner, delivered, bounced, complained, expected
):
    sends(practitioner, count=delivered)
    sends(practitioner, count=bounced, status="bounced")
    sends(practitioner, count=complained, status="complained")

    reputation.refresh()

    assert reputation.state_of(practitioner_id=practitioner.pk) == expected


def test_unique_recipients_count_once(practitioner):
    """Ten invoices to the same bounced address are one bounced address."""
    sends(practitioner, count=38)
    patient = PatientFactory(practitioner=practitioner)
    for _n in range(10):
        DeliveryFactory(
            invoice=InvoiceFactory(patient=patient),
            status="bounced",
            sent_at=NOW - datetime.timedelta(days=1),
        )
    sends(practitioner, count=1, status="bounced")

    windows = reputation.measure()[practitioner.pk]

    assert [(w.days, w.recipients, w.bounced) for w in windows] == [(7, 40, 2), (30, 40, 2)]


def test_the_worst_window_wins_and_old_sends_fall_out(practitioner):
    # 20 days ago: 4 bounces out of 30 (13 %); this week: 25 clean sends.
    sends(practitioner, count=26, days_ago=20)
    sends(practitioner, count=4, status="bounced", days_ago=20)
    sends(practitioner, count=25, days_ago=2)

    reputation.refresh()
    row = Reputation.objects.get(practitioner=practitioner)
    # 30 days: 4 of 55 = 7.3 % → at risk; 7 days: 0 of 25.
    assert (row.state, row.window_days, row.bounced, row.recipients) == (
        ReputationState.AT_RISK,
        30,
        4,
        55,
    )

    with time_machine.travel(NOW + datetime.timedelta(days=11), tick=False):
        reputation.refresh()
    row.refresh_from_db()
    assert row.state == ReputationState.REGULAR
    assert row.warned_at is None


def test_personal_smtp_sends_never_count(practitioner):
    sends(practitioner, count=30, status="bounced", channel="smtp")
    sends(practitioner, count=30)

    reputation.refresh()

    assert reputation.state_of(practitioner_id=practitioner.pk) == ReputationState.REGULAR


def test_practitioners_are_measured_apart(practitioner, other_practitioner):
    sends(practitioner, count=20)
    sends(practitioner, count=5, status="bounced")
    sends(other_practitioner, count=40)

    changes = reputation.refresh()

    assert [(c.practitioner_id, c.after) for c in changes] == [
        (practitioner.pk, ReputationState.SUSPENDED)
    ]
    assert reputation.state_of(practitioner_id=other_practitioner.pk) == ReputationState.REGULAR


def test_a_suspension_stays_until_lifted_then_counts_afresh(practitioner):
    sends(practitioner, count=20)
    sends(practitioner, count=5, status="bounced")
    reputation.refresh()
    assert reputation.is_suspended(practitioner_id=practitioner.pk)

    # The bad sends fall out of the 7-day window: still suspended (only the operator lifts).
    with time_machine.travel(NOW + datetime.timedelta(days=8), tick=False):
        assert reputation.refresh() == []
        assert reputation.is_suspended(practitioner_id=practitioner.pk)

    numbers = reputation.lift(practitioner_id=practitioner.pk)
    assert numbers is not None and numbers["bounced"] == 5
    # The old bounces are still in the 30-day window, but counting restarts at the lift.
    reputation.refresh()
    assert reputation.state_of(practitioner_id=practitioner.pk) == ReputationState.REGULAR
    assert reputation.lift(practitioner_id=practitioner.pk) is None


def test_one_query_measures_every_practitioner(practitioner, other_practitioner):
    sends(practitioner, count=3)
    sends(other_practitioner, count=3)

    with CaptureQueriesContext(connection) as queries:
        measured = reputation.measure()

    assert len(queries) == 1
    assert set(measured) == {practitioner.pk, other_practitioner.pk}


def test_the_warning_is_claimed_once(practitioner):
    sends(practitioner, count=38)
    sends(practitioner, count=3, status="bounced")
    reputation.refresh()

    assert reputation.claim_warning(practitioner_id=practitioner.pk)
    assert not reputation.claim_warning(practitioner_id=practitioner.pk)


def test_only_practitioners_with_bad_news_or_a_state_are_measured(
    practitioner, other_practitioner, monkeypatch
):
    sends(practitioner, count=30)
    sends(practitioner, count=1, status="bounced")
    sends(other_practitioner, count=30)
    third = PatientFactory().practitioner
    Reputation.objects.create(practitioner=third, state=ReputationState.AT_RISK)
    measured_ids = []
    real_measure = reputation.measure

    def spy(*, practitioner_ids=None, now=None):
        measured_ids.append(sorted(practitioner_ids))
        return real_measure(practitioner_ids=practitioner_ids, now=now)

    monkeypatch.setattr(reputation, "measure", spy)
    changes = reputation.refresh()

    assert measured_ids == [sorted([practitioner.pk, third.pk])]
    # The third had no sends left in the windows: back to regular.
    assert [(c.practitioner_id, c.after) for c in changes] == [(third.pk, ReputationState.REGULAR)]
