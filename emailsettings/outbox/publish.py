"""The only place that publishes the module's tasks to the broker.

The database is the source of truth: a task is published after the transaction that made
its rows commits (:func:`on_commit`), and a broker that is down or does not answer is
logged and otherwise ignored — the rows stay ``queued`` and the sweeper publishes them
later. The broker's socket timeouts (``CELERY_BROKER_TRANSPORT_OPTIONS``) keep a publish
from hanging a web request.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from django.db import transaction
from kombu.exceptions import KombuError
from kombu.exceptions import OperationalError as KombuOperationalError

from emailsettings.models import Delivery, DeliveryStatus
from emailsettings.outbox import outage
from emailsettings.outbox.dispatch import Batch, Dispatcher
from psicogest.celery import app

logger = logging.getLogger(__name__)

SEND_TASK = "emailsettings.send_deliveries"


# What a broker that is down or does not answer raises on publish.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    KombuOperationalError,
    KombuError,
    redis.RedisError,
    OSError,
)


# Broker priorities (Redis: 0 is taken first). A practitioner's backlog batches go behind
# everything else; a fast-lane batch (:class:`~.dispatch.Batch`) and every other task keep the
# default, so a practitioner with nothing in flight gets the next free worker at month's end
# instead of waiting behind one batch of every practitioner with a backlog.
FAST_LANE_PRIORITY = 0
BACKLOG_PRIORITY = 3


def publish_task(name: str, args: Sequence[Any], *, priority: int | None = None) -> bool:
    """Publish one task by name; ``False`` (logged) when the broker is unavailable — or
    failed in this process moments ago (:mod:`.outage`): the rows stay queued for the
    sweeper instead of each request waiting on a dead broker."""
    if outage.broker_down():
        logger.info("Broker unavailable moments ago, task %s not published", name)
        return False
    try:
        if priority is None:
            app.send_task(name, args=list(args))
        else:
            app.send_task(name, args=list(args), priority=priority)
    except BROKER_ERRORS as err:
        outage.mark_broker_down(type(err).__name__)
        logger.warning("Broker unavailable, task %s not published: %s", name, type(err).__name__)
        return False
    return True


def on_commit(action: Callable[[], Any]) -> None:
    """Run ``action`` (a publish) once the current transaction commits."""
    transaction.on_commit(action)


def publish_batches(dispatcher: Dispatcher, practitioner_id: int, batches: list[Batch]) -> int:
    """One send task per batch (its ids, and the slot reserved for it); returns how many
    went out. After a broker failure the rest are not tried and their reserved slots are
    given back: the rows stay ``queued`` for the sweeper."""
    for index, batch in enumerate(batches):
        args: list[Any] = [batch.ids, batch.token] if batch.token else [batch.ids]
        priority = FAST_LANE_PRIORITY if batch.fast else BACKLOG_PRIORITY
        if not publish_task(SEND_TASK, args, priority=priority):
            dispatcher.cancel(practitioner_id, [b.token for b in batches[index:]])
            return index
    return len(batches)


def publish_deliveries(rows: Iterable[tuple[int, int, str]]) -> int:
    """Publish send tasks for ``(id, practitioner_id, channel)`` rows; returns how many
    tasks went out. Each practitioner's rows join its backlog and only as many batches as it
    has free worker slots are published now (:mod:`.dispatch`): the others follow one by
    one as its batches end, so practitioners take turns. After one broker failure the rest
    are left to the sweeper: each failed publish waits on the socket timeout, which should
    not be paid per batch."""
    groups: OrderedDict[int, list[int]] = OrderedDict()
    for pk, practitioner_id, _channel in rows:
        groups.setdefault(practitioner_id, []).append(pk)
    dispatcher = Dispatcher()
    published = 0
    for practitioner_id, ids in groups.items():
        batches = dispatcher.enqueue(practitioner_id, ids)
        done = publish_batches(dispatcher, practitioner_id, batches)
        published += done
        if done < len(batches):
            break
    return published


def publish_ids(ids: Iterable[int]) -> int:
    """:func:`publish_deliveries` for delivery ids (their owner and channel looked up)."""
    rows = list(
        Delivery.objects.filter(pk__in=list(ids))
        .order_by("id")
        .values_list("pk", "practitioner_id", "channel")
    )
    return publish_deliveries(rows) if rows else 0


def publish_queued_on_commit(rows: Iterable[Delivery]) -> None:
    """Once the transaction that created ``rows`` commits, publish those that are
    ``queued`` (the scheduled, held and suppressed ones wait for their turn)."""
    to_send = [
        (row.pk, row.practitioner_id, row.channel)
        for row in rows
        if row.status == DeliveryStatus.QUEUED
    ]
    if to_send:
        on_commit(lambda: publish_deliveries(to_send))


def publish_ids_on_commit(ids: Sequence[int]) -> None:
    ids = list(ids)
    if ids:
        on_commit(lambda: publish_ids(ids))
