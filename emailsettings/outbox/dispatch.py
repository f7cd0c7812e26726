"""Fair dispatch: each practitioner's worker slots and backlog, shared by every worker.

At most ``EMAILSETTINGS_MAILBOX_WORKER_SLOTS`` batches of one practitioner run at a time
(a slow or hostile mailbox then only slows its owner), and — so that one practitioner
queueing 5,000 invoices does not delay fifty others queueing 20 each — no more than that
many of its batches wait in the broker either. Everything else waits in the practitioner's
**backlog** (a Redis sorted set of delivery ids, oldest first; an id is there once however
often it is added):

- :meth:`Dispatcher.enqueue` adds ids to the backlog and returns what may be published now:
  one batch per free slot, each with the slot *reserved* for it (a token the task carries),
  so a batch waiting in the broker counts like a running one;
- :meth:`Dispatcher.acquire` takes the batch's reserved slot (or a free one, or another
  batch's reservation: that one gives way when it starts) when it starts; a batch that finds
  none gives its ids back with :meth:`enqueue`;
- :meth:`Dispatcher.release` frees the slot and returns the next batch of the backlog, which
  the worker publishes: it joins the broker's queue behind everybody else's, so
  practitioners take turns, batch by batch.

A practitioner may borrow ``EMAILSETTINGS_MAILBOX_IDLE_SLOTS`` more slots while no other
practitioner's batch waits in the broker (the **waiting** set, every practitioner's
reservations, tells): then the worker processes nobody else needs are lent to it instead of
standing idle, so a practitioner alone at month's end sends as fast as the old first-come
order did. The loan ends by itself: a batch on a lent slot (its token ends in ``:lent``)
hands its remaining rows back to the backlog, between two messages, as soon as another
practitioner's batch waits (``worker`` asks :meth:`Dispatcher.others_waiting`), and a batch
that ends while others wait publishes only within the practitioner's own slots. Off by
default (0): one SMTP session per mailbox.

Each step is one Lua script, so a batch that ends while another adds to the backlog never
strands ids. Slots expire (a dead worker's slot frees itself after a lease); the backlog is
only an index of rows the database keeps ``queued``: if Redis loses it, the sweeper
re-publishes those rows. Without Redis (the embedded default runs one worker) there are no
slots and no backlog: everything is published at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from emailsettings import conf
from emailsettings.outbox import outage

logger = logging.getLogger(__name__)

# KEYS: slots, backlog, waiting (everybody's reservations). ARGV: now, slot count, batch
# size, backlog ttl, reservation ttl, token prefix, token to release ("" for none), slots
# lent when nobody else waits, fast-lane batch size (0: none), ids to add… Returns the
# batches to publish now, each {token, fast, id, id…}: one per free slot, the oldest ids
# first, each slot reserved. ``fast`` (1) marks the batch of a practitioner who had nothing
# running or reserved when these ids came and whose whole backlog fits in the fast lane (at
# most the fast-lane size): it is published ahead of the backlogs (see
# publish.FAST_LANE_PRIORITY). A bigger backlog takes turns from its first batch: the fast
# lane never splits a practitioner's invoices (its first ones leaving early would not end
# its sending sooner, and the extra batch would cost every sender a batch's overhead).
_DISPATCH_SCRIPT = """
local now = tonumber(ARGV[1])
if ARGV[7] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[7])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 10, #ARGV do
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i])
end
local held = redis.call('ZRANGE', KEYS[1], 0, -1)
local fast_size = tonumber(ARGV[9])
-- The fast lane: nothing running or reserved, and the whole backlog fits in the lane.
local idle = ARGV[7] == '' and #held == 0 and fast_size > 0
  and redis.call('ZCARD', KEYS[2]) <= fast_size
local mine_waiting = 0
for _, member in ipairs(held) do
  if string.sub(member, 1, 4) ~= 'run:' then
    mine_waiting = mine_waiting + 1
  end
end
local slots = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[3]) - mine_waiting <= 0 then
  slots = slots + tonumber(ARGV[8])
end
local free = slots - #held
local batches = {}
while free > 0 do
  local size = tonumber(ARGV[3])
  local fast = 0
  if idle and #batches == 0 then
    size = math.min(size, fast_size)
    fast = 1
  end
  local popped = redis.call('ZPOPMIN', KEYS[2], size)
  if #popped == 0 then
    break
  end
  local token = ARGV[6] .. #batches
  if #held + #batches >= tonumber(ARGV[2]) then
    token = token .. ':lent'
  end
  local batch = {token, fast}
  for i = 1, #popped, 2 do
    batch[#batch + 1] = popped[i]
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), token)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), token)
  batches[#batches + 1] = batch
  free = free - 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return batches
"""

# KEYS: slots, waiting. ARGV: now, slot count, ttl, token. Returns 1 when the slot is held (as
# "run:<token>"): the token's reservation, a free slot, or a reservation of a batch still
# waiting in the broker — that batch, when it starts, finds no slot and gives its ids back
# to the backlog. Running slots are never taken, nor lent ones (only the batch a slot was
# lent for knows to give it back).
_ACQUIRE_SCRIPT = """
local now = tonumber(ARGV[1])
local running = 'run:' .. ARGV[4]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local taken = nil
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  taken = ARGV[4]
elseif redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(member, 1, 4) ~= 'run:' and string.sub(member, -5) ~= ':lent' then
      taken = member
      break
    end
  end
  if not taken then
    return 0
  end
end
if taken then
  redis.call('ZREM', KEYS[1], taken)
  redis.call('ZREM', KEYS[2], taken)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), running)
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""

# KEYS: slots, waiting. ARGV: now. Returns how many batches of other practitioners wait in
# the broker (everybody's reservations but the practitioner's own).
_OTHERS_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]))
local mine = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], tonumber(ARGV[1]), '+inf')) do
  if string.sub(member, 1, 4) ~= 'run:' then
    mine = mine + 1
  end
end
return redis.call('ZCARD', KEYS[2]) - mine
"""

# A backlog nobody touched for this long is forgotten (the sweeper has its rows anyway).
BACKLOG_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Batch:
    """Delivery ids to publish as one task, the slot reserved for it ("" for none), and
    whether it takes the fast lane (the few invoices of a practitioner with nothing in
    flight, all in one batch: it is published ahead of the backlogs)."""

    ids: list[int]
    token: str = ""
    fast: bool = False


def is_lent(token: str) -> bool:
    """Whether the batch of ``token`` runs on a slot lent while nobody else waited: it gives
    its turn back, between two messages, as soon as someone does."""
    return token.endswith(":lent")


def reservation_owner(token: str) -> int | None:
    """The practitioner a reservation token was made for (``b:<practitioner>:<nonce>:<n>``),
    ``None`` for anything else."""
    parts = token.split(":")
    if len(parts) >= 4 and parts[0] == "b" and parts[1].isascii() and parts[1].isdigit():
        return int(parts[1])
    return None


def _ids(values: Sequence[Any]) -> list[int]:
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    return [int(value) for value in text if value.isascii() and value.isdigit()]


def _token(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Dispatcher:
    """The practitioners' worker slots and backlogs (see the module docstring)."""

    def __init__(self) -> None:
        self._client: Any = None
        url = conf.redis_url()
        if url:
            self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            self._dispatch = self._client.register_script(_DISPATCH_SCRIPT)
            self._acquire = self._client.register_script(_ACQUIRE_SCRIPT)
            self._others = self._client.register_script(_OTHERS_SCRIPT)

    #: Every practitioner's reservations: batches published and not started yet.
    WAITING_KEY = "emailsettings:waiting"

    @staticmethod
    def _keys(practitioner_id: int) -> list[str]:
        return [
            f"emailsettings:slots:{practitioner_id}",
            f"emailsettings:backlog:{practitioner_id}",
            Dispatcher.WAITING_KEY,
        ]

    def _run(self, practitioner_id: int, ids: Sequence[int], release: str = "") -> list[Batch]:
        args = [
            time.time(),
            conf.mailbox_worker_slots(),
            conf.batch_size(),
            BACKLOG_TTL_SECONDS,
            conf.dispatch_reservation_seconds(),
            f"b:{practitioner_id}:{uuid.uuid4().hex}:",
            release,
            conf.mailbox_idle_slots(),
            conf.fast_lane_size(),
            *ids,
        ]
        found = self._dispatch(keys=self._keys(practitioner_id), args=args)
        return [
            Batch(ids=_ids(batch[2:]), token=_token(batch[0]), fast=int(batch[1]) == 1)
            for batch in found
        ]

    def enqueue(self, practitioner_id: int, ids: Sequence[int]) -> list[Batch]:
        """Add ``ids`` to the practitioner's backlog; returns the batches to publish now
        (none while all of the practitioner's slots are running or reserved)."""
        if self._client is None or outage.broker_down():
            return _split(ids)
        try:
            return self._run(practitioner_id, ids)
        except (redis.RedisError, OSError) as err:  # no Redis, no fairness: sending goes on
            outage.mark_broker_down(type(err).__name__)
            logger.warning("Dispatch: Redis unavailable, publishing %s deliveries now", len(ids))
            return _split(ids)

    def acquire(self, practitioner_id: int, token: str, *, ttl: float) -> bool:
        """Hold a slot for a batch that starts: its reservation, a free slot, or the
        reservation of a batch of the practitioner still waiting in the broker."""
        if self._client is None:
            return True
        args = [time.time(), conf.mailbox_worker_slots(), ttl, token]
        try:
            slots, _backlog, waiting = self._keys(practitioner_id)
            return bool(self._acquire(keys=[slots, waiting], args=args))
        except (redis.RedisError, OSError):  # no Redis, no cap: sending goes on
            logger.warning("Dispatch: Redis unavailable, no per-mailbox cap")
            return True

    def others_waiting(self, practitioner_id: int) -> bool:
        """Whether batches of other practitioners wait in the broker (a lent slot is then
        given back)."""
        if self._client is None:
            return False
        slots, _backlog, waiting = self._keys(practitioner_id)
        try:
            return int(self._others(keys=[slots, waiting], args=[time.time()])) > 0
        except (redis.RedisError, OSError):
            return False

    def refresh(self, practitioner_id: int, token: str, *, ttl: float) -> None:
        """Still working: push the slot's expiry on (a dead worker's slot frees itself
        after ``ttl``, the lease of the row it was sending)."""
        if self._client is None:
            return
        try:
            key = self._keys(practitioner_id)[0]
            self._client.zadd(key, {f"run:{token}": time.time() + ttl}, xx=True)
        except (redis.RedisError, OSError):
            pass

    def cancel(self, practitioner_id: int, tokens: Sequence[str]) -> None:
        """Give back slots reserved for batches that could not be published (their rows
        stay ``queued``: the sweeper publishes them again)."""
        tokens = [token for token in tokens if token]
        if self._client is None or not tokens:
            return
        try:
            self._client.zrem(self._keys(practitioner_id)[0], *tokens)
            self._client.zrem(self.WAITING_KEY, *tokens)
        except (redis.RedisError, OSError):
            pass

    def cancel_reservation(self, token: str) -> tuple[int, list[Batch]]:
        """Give back the reservation of ``token`` if its batch never took it; returns the
        practitioner (read from the token) and the batches of its backlog to publish in its
        place. Nothing for a slot the batch acquired, released or never had."""
        practitioner_id = reservation_owner(token)
        if self._client is None or practitioner_id is None:
            return 0, []
        slots, _backlog, waiting = self._keys(practitioner_id)
        try:
            if not self._client.zrem(slots, token):
                return practitioner_id, []
            self._client.zrem(waiting, token)
            return practitioner_id, self._run(practitioner_id, [])
        except (redis.RedisError, OSError):
            return practitioner_id, []

    #: Set by each sweep, expires when sweeps stop: its absence means Redis lost its data
    #: (restarted empty) or beat was away, and the backlogs may have lost ids.
    INTACT_KEY = "emailsettings:backlogs-intact"
    INTACT_SECONDS = 120

    def backlogs_intact(self) -> bool:
        """Whether the backlogs still hold every id published since the last sweep (the
        marker the previous sweep left is there); sets the marker for the next sweep.
        ``False`` without an answer from Redis; ``True`` without Redis (no backlogs)."""
        if self._client is None:
            return True
        try:
            fresh = self._client.set(self.INTACT_KEY, "1", ex=self.INTACT_SECONDS, nx=True)
            if not fresh:
                self._client.expire(self.INTACT_KEY, self.INTACT_SECONDS)
            return not fresh
        except (redis.RedisError, OSError):
            return False

    def release(self, practitioner_id: int, token: str) -> list[Batch]:
        """Free the slot; returns the next batch of the backlog (to publish)."""
        if self._client is None:
            return []
        try:
            return self._run(practitioner_id, [], release=f"run:{token}")
        except (redis.RedisError, OSError):
            return []


def _split(ids: Sequence[int]) -> list[Batch]:
    size = conf.batch_size()
    return [Batch(ids=list(ids[i : i + size])) for i in range(0, len(ids), size)]
