"""Fair queues: a practitioner who queues many invoices does not delay the others.

Each practitioner's rows wait in its backlog (Redis) and only as many of its batches as it
has worker slots are in the broker at a time; when one ends, its next batch joins the
queue behind everybody else's. Checked on the dispatcher itself (real Redis) and through
the real path — ``queue_invoice_emails`` → publish → a Celery worker process → aiosmtpd —
by the order the server received the messages (no timing assertions).
"""

from __future__ import annotations

import uuid

import pytest

from devtools.smtpserver import Behaviour
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.dispatch import Dispatcher
from emailsettings.outbox.queueing import queue_invoice_emails
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory


@pytest.fixture
def small_batches(settings):
    """Batches of five, one slot each and none lent (see the loan's own tests below)."""
    settings.EMAILSETTINGS_BATCH_SIZE = 5
    settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = 1
    settings.EMAILSETTINGS_MAILBOX_IDLE_SLOTS = 0


@pytest.fixture
def lending(settings):
    """One slot each, one more lent while nobody else waits; no reservation left over
    from another test in the shared waiting set."""
    import redis

    settings.EMAILSETTINGS_BATCH_SIZE = 5
    settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = 1
    settings.EMAILSETTINGS_MAILBOX_IDLE_SLOTS = 1
    redis.Redis.from_url(settings.REDIS_URL).delete(Dispatcher.WAITING_KEY)


def someone() -> int:
    """A practitioner id no other test uses (the dispatcher's keys live in Redis)."""
    return 10**9 + uuid.uuid4().int % 10**8


# --- the dispatcher -----------------------------------------------------------------------


def test_one_batch_per_slot_is_published_the_rest_waits_in_the_backlog(small_batches):
    dispatcher, owner = Dispatcher(), someone()

    [first] = dispatcher.enqueue(owner, list(range(1, 13)))
    assert first.ids == [1, 2, 3, 4, 5] and first.token
    # The slot is reserved for the published batch: more rows only join the backlog,
    # once each however often they are added (the sweeper re-adds long-queued rows).
    assert dispatcher.enqueue(owner, [13, 6, 7]) == []
    assert dispatcher.acquire(owner, first.token, ttl=30) is True
    # The slot is running now: nobody else gets it.
    assert dispatcher.acquire(owner, "another-batch", ttl=30) is False

    [second] = dispatcher.release(owner, first.token)
    assert second.ids == [6, 7, 8, 9, 10]
    assert dispatcher.acquire(owner, second.token, ttl=30) is True
    [third] = dispatcher.release(owner, second.token)
    assert third.ids == [11, 12, 13]
    assert dispatcher.acquire(owner, third.token, ttl=30) is True
    assert dispatcher.release(owner, third.token) == []


def test_a_batch_that_starts_first_takes_a_waiting_batchs_reservation(small_batches):
    dispatcher, owner = Dispatcher(), someone()
    [waiting] = dispatcher.enqueue(owner, [1, 2, 3])

    # Another batch of the practitioner (the sweeper's, a retry) starts before it.
    assert dispatcher.acquire(owner, "early-batch", ttl=30) is True
    # The waiting one, when it starts, finds no slot: its ids go back to the backlog and
    # the batch that runs publishes them when it ends.
    assert dispatcher.acquire(owner, waiting.token, ttl=30) is False
    assert dispatcher.enqueue(owner, waiting.ids) == []
    [after] = dispatcher.release(owner, "early-batch")
    assert after.ids == [1, 2, 3]


def test_practitioners_do_not_share_slots_and_a_cancelled_reservation_frees_the_slot(
    small_batches, settings
):
    settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = 2
    dispatcher, big, small = Dispatcher(), someone(), someone()

    batches = dispatcher.enqueue(big, list(range(100, 130)))
    assert [b.ids for b in batches] == [[100, 101, 102, 103, 104], [105, 106, 107, 108, 109]]
    [other] = dispatcher.enqueue(small, [1, 2])
    assert other.ids == [1, 2]

    # A publish that failed gives its slot back: the next enqueue publishes again.
    dispatcher.cancel(big, [batches[1].token])
    [again] = dispatcher.enqueue(big, [])
    assert again.ids == [110, 111, 112, 113, 114]


def test_a_dead_workers_slot_does_not_block_the_practitioner(small_batches):
    dispatcher, owner = Dispatcher(), someone()
    [lost] = dispatcher.enqueue(owner, [1, 2, 3])
    assert dispatcher.enqueue(owner, [4]) == []
    assert dispatcher.acquire(owner, lost.token, ttl=1) is True  # then the worker died

    # Its slot expires: the backlog moves on (rows 1-3 are back to queued in the database
    # once their leases expire, and the sweeper publishes them again).
    [batch] = wait_until(lambda: dispatcher.enqueue(owner, []), timeout=5, interval=0.3)
    assert batch.ids == [4]
    assert lost.token != batch.token


def test_a_practitioner_alone_borrows_the_idle_slot(lending):
    dispatcher, owner = Dispatcher(), someone()

    # Nobody else waits: the worker process nobody needs is lent.
    first, second = dispatcher.enqueue(owner, list(range(1, 21)))
    assert (first.ids, second.ids) == ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert dispatcher.acquire(owner, first.token, ttl=30) is True
    # Its own batch waiting in the broker does not end the loan: as the first ends, the
    # next one is published beside it.
    [third] = dispatcher.release(owner, first.token)
    assert third.ids == [11, 12, 13, 14, 15]
    assert dispatcher.acquire(owner, second.token, ttl=30) is True
    assert dispatcher.acquire(owner, third.token, ttl=30) is True
    assert dispatcher.enqueue(owner, []) == []  # two running: the loan is one slot


def test_the_loan_ends_as_soon_as_someone_else_waits(lending):
    dispatcher, big, small = Dispatcher(), someone(), someone()
    first, second = dispatcher.enqueue(big, list(range(100, 130)))
    assert dispatcher.acquire(big, first.token, ttl=30) is True
    assert dispatcher.acquire(big, second.token, ttl=30) is True

    # A small practitioner queues: its batch waits in the broker (behind nobody else's).
    [theirs] = dispatcher.enqueue(small, [1, 2, 3])
    assert theirs.ids == [1, 2, 3]
    # The big one's batch ends: while someone waits it keeps to its own slot, and one of
    # its batches still runs, so nothing of it is published.
    assert dispatcher.release(big, first.token) == []
    # The small batch starts; nobody waits any more: the loan comes back.
    assert dispatcher.acquire(small, theirs.token, ttl=30) is True
    again = dispatcher.release(big, second.token)
    assert [batch.ids for batch in again] == [[110, 111, 112, 113, 114], [115, 116, 117, 118, 119]]


def test_a_lent_slot_is_never_taken_by_another_batch(lending):
    """A batch without a reservation (the sweeper's, a retry) may take a waiting batch's
    reserved slot, but not a lent one: it would keep it without knowing to give it back."""
    dispatcher, owner = Dispatcher(), someone()
    own, lent = dispatcher.enqueue(owner, list(range(1, 11)))
    assert dispatcher.acquire(owner, own.token, ttl=30) is True

    assert dispatcher.acquire(owner, "sweeper-batch", ttl=30) is False
    assert dispatcher.acquire(owner, lent.token, ttl=30) is True


def test_without_a_loan_the_slot_count_is_the_limit(lending, settings):
    settings.EMAILSETTINGS_MAILBOX_IDLE_SLOTS = 0
    dispatcher, owner = Dispatcher(), someone()
    assert len(dispatcher.enqueue(owner, list(range(1, 21)))) == 1


# --- through the worker -------------------------------------------------------------------


def test_a_practitioner_with_nothing_in_flight_sends_a_few_invoices_in_the_fast_lane(settings):
    settings.EMAILSETTINGS_BATCH_SIZE = 50
    settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = 1
    settings.EMAILSETTINGS_MAILBOX_IDLE_SLOTS = 0
    settings.EMAILSETTINGS_FAST_LANE_SIZE = 10
    dispatcher, owner = Dispatcher(), someone()

    [first] = dispatcher.enqueue(owner, list(range(1, 11)))
    assert first.fast and first.ids == list(range(1, 11))
    # While that batch holds the slot, more invoices only wait.
    assert dispatcher.acquire(owner, first.token, ttl=30)
    assert dispatcher.enqueue(owner, [11, 12]) == []
    # Its end publishes them as an ordinary batch, behind everybody else's.
    [rest] = dispatcher.release(owner, first.token)
    assert not rest.fast and rest.ids == [11, 12]
    assert dispatcher.acquire(owner, rest.token, ttl=30)
    assert dispatcher.release(owner, rest.token) == []
    # Nothing in flight again: the next invoice takes the fast lane.
    [again] = dispatcher.enqueue(owner, [13])
    assert again.fast and again.ids == [13]


@pytest.mark.parametrize("count", [11, 20, 100])
def test_more_invoices_than_the_fast_lane_holds_take_turns_from_the_first_batch(settings, count):
    """The fast lane never splits a practitioner's invoices: the first ten leaving early
    would not end the sending sooner, and the extra batch would cost everybody a batch's
    overhead."""
    settings.EMAILSETTINGS_BATCH_SIZE = 50
    settings.EMAILSETTINGS_MAILBOX_WORKER_SLOTS = 1
    settings.EMAILSETTINGS_MAILBOX_IDLE_SLOTS = 0
    settings.EMAILSETTINGS_FAST_LANE_SIZE = 10
    dispatcher, owner = Dispatcher(), someone()

    [first] = dispatcher.enqueue(owner, list(range(1, count + 1)))
    assert not first.fast and first.ids == list(range(1, min(count, 50) + 1))
    assert dispatcher.acquire(owner, first.token, ttl=30)
    batches = dispatcher.release(owner, first.token)
    assert [(batch.fast, batch.ids) for batch in batches] == (
        [(False, list(range(51, count + 1)))] if count > 50 else []
    )


def test_without_a_fast_lane_every_batch_is_ordinary(settings, small_batches):
    settings.EMAILSETTINGS_FAST_LANE_SIZE = 0
    [first] = Dispatcher().enqueue(someone(), list(range(1, 8)))
    assert not first.fast and first.ids == [1, 2, 3, 4, 5]


BIG_INVOICES = 25  # five batches of five
SMALL_PRACTITIONERS = 4
SMALL_INVOICES = 5  # one batch each


def queue_for_a_new_practitioner(smtp_account_factory, server, domain: str, count: int):
    """A new practitioner sending over SMTP to ``server`` queues ``count`` invoices to
    ``p<n>@<domain>``."""
    owner = PractitionerFactory()
    smtp_account_factory(server, practitioner=owner)
    EmailSettings.objects.update_or_create(practitioner=owner, defaults={"channel": Channel.SMTP})
    invoices = [
        InvoiceFactory(patient=PatientFactory(practitioner=owner, email=f"p{n}@{domain}"))
        for n in range(count)
    ]
    return queue_invoice_emails(invoices)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_small_practitioners_go_before_the_big_ones_second_batch(
    small_batches, settings, local_ca, celery_worker_factory, smtp_server, smtp_account_factory
):
    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    # The turns alone: without the fast lane (its own tests below), which would send the
    # small ones' single batches even before the big one's first.
    settings.EMAILSETTINGS_FAST_LANE_SIZE = 0

    def practitioner_sending_to(domain: str, count: int) -> list[Delivery]:
        return queue_for_a_new_practitioner(smtp_account_factory, smtp_server, domain, count)

    # The month's end: the big practitioner queues first, the small ones right after;
    # every task is in the broker before the worker starts, so the order is the dispatch's.
    rows = practitioner_sending_to("grande.test", BIG_INVOICES)
    for k in range(SMALL_PRACTITIONERS):
        rows += practitioner_sending_to(f"piccolo{k}.test", SMALL_INVOICES)
    celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file,
        EMAILSETTINGS_BATCH_SIZE="5",
        EMAILSETTINGS_MAILBOX_WORKER_SLOTS="1",
        EMAILSETTINGS_MAILBOX_IDLE_SLOTS="0",
        EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE="60000",
        EMAILSETTINGS_FAST_LANE_SIZE="0",
    )

    ids = [row.pk for row in rows]
    wait_until(
        lambda: (
            not Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.SENT).exists()
        ),
        timeout=90,
    )
    order = [m.rcpt_tos[0].rsplit("@", 1)[1] for m in smtp_server.messages]
    assert len(order) == len(ids)
    big_positions = [i for i, domain in enumerate(order) if domain == "grande.test"]
    small_positions = [i for i, domain in enumerate(order) if domain != "grande.test"]
    # The big one's first batch, then every small practitioner, then the rest of the big.
    assert big_positions[:5] == [0, 1, 2, 3, 4], order
    assert max(small_positions) < big_positions[5], order
    # Each practitioner's own invoices keep their order.
    for k in range(SMALL_PRACTITIONERS):
        domain = f"piccolo{k}.test"
        mine = [m.rcpt_tos[0] for m in smtp_server.messages if m.rcpt_tos[0].endswith(domain)]
        assert mine == [f"p{n}@{domain}" for n in range(SMALL_INVOICES)]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_lent_worker_process_is_given_back_between_two_messages(
    lending, settings, local_ca, celery_worker_factory, smtp_server_factory, smtp_account_factory
):
    """Alone, the big practitioner sends on both worker processes; a newcomer's invoice
    then goes out after a message or two of the big one, not after its lent batch."""

    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    settings.EMAILSETTINGS_BATCH_SIZE = 10
    server = smtp_server_factory(behaviour=Behaviour(data_delay=0.4))
    celery_worker_factory(
        concurrency=2,
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file,
        EMAILSETTINGS_BATCH_SIZE="10",
        EMAILSETTINGS_MAILBOX_WORKER_SLOTS="1",
        EMAILSETTINGS_MAILBOX_IDLE_SLOTS="1",
        EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE="60000",
    )

    def practitioner_sending_to(domain: str, count: int) -> list[Delivery]:
        return queue_for_a_new_practitioner(smtp_account_factory, server, domain, count)

    big = practitioner_sending_to("grande.test", 20)
    # Both of its batches are sending: the second process is on loan.
    wait_until(lambda: server.max_concurrent >= 2, timeout=30, message="no loan")
    [newcomer] = practitioner_sending_to("nuovo.test", 1)

    ids = [row.pk for row in big] + [newcomer.pk]
    wait_until(
        lambda: (
            not Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.SENT).exists()
        ),
        timeout=90,
    )
    order = [m.rcpt_tos[0].rsplit("@", 1)[1] for m in server.messages]
    # Without giving the loan back the newcomer waits for a whole batch of ten to end
    # (by then both batches have sent about twenty); with it, for the message on the way.
    assert order.index("nuovo.test") <= 8, order
    # The big one's invoices keep their order, and each went once.
    mine = [m.rcpt_tos[0] for m in server.messages if m.rcpt_tos[0].endswith("grande.test")]
    assert sorted(mine) == sorted(f"p{n}@grande.test" for n in range(20))


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_newcomers_invoice_overtakes_every_backlog(
    small_batches,
    settings,
    local_ca,
    celery_worker_factory,
    smtp_server_factory,
    smtp_account_factory,
):
    """Month's end: six practitioners with backlogs keep the only worker busy; a practitioner
    with nothing in flight queues one invoice. It leaves after the batch in hand, not after
    one batch of everybody (the backlogs' batches wait behind it in the broker)."""
    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    server = smtp_server_factory(behaviour=Behaviour(data_delay=0.1))
    celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file,
        EMAILSETTINGS_BATCH_SIZE="5",
        EMAILSETTINGS_MAILBOX_WORKER_SLOTS="1",
        EMAILSETTINGS_MAILBOX_IDLE_SLOTS="0",
        EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE="60000",
    )
    rows = []
    for k in range(6):
        rows += queue_for_a_new_practitioner(smtp_account_factory, server, f"studio{k}.test", 15)

    def first_batches_done() -> bool:
        domains = [m.rcpt_tos[0].rsplit("@", 1)[1] for m in server.messages]
        return all(domains.count(f"studio{k}.test") >= 5 for k in range(6))

    # Every practitioner's first batch has left: only backlog batches remain.
    wait_until(first_batches_done, timeout=90)
    received_before = len(server.messages)
    assert received_before < len(rows) - 20, "the backlogs must still be long"
    [newcomer] = queue_for_a_new_practitioner(smtp_account_factory, server, "nuovo.test", 1)

    wait_until(lambda: any(m.rcpt_tos == ["p0@nuovo.test"] for m in server.messages), timeout=90)
    order = [m.rcpt_tos[0] for m in server.messages]
    ahead = order.index("p0@nuovo.test") - received_before
    # At most the rest of the batch the worker had in hand (five messages).
    assert ahead <= 5, order[received_before:]
    ids = [row.pk for row in [*rows, newcomer]]
    wait_until(
        lambda: (
            not Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.SENT).exists()
        ),
        timeout=120,
    )
    assert sorted(m.message_id for m in server.messages) == sorted(
        Delivery.objects.filter(pk__in=ids).values_list("message_id", flat=True)
    )
