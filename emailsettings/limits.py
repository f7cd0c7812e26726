"""Smart Mail limits: they protect the platform's shared sending reputation.

- **Pace**: each practitioner's Smart Mail messages go out at most
  ``EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE`` a minute, through the same Redis token bucket
  that paces a personal SMTP mailbox (:class:`TokenBucket`).
- **Daily quota**: at most ``EMAILSETTINGS_WARMUP_DAILY_QUOTA`` Smart Mail messages per
  rolling 24 hours while the account is younger than ``EMAILSETTINGS_WARMUP_DAYS`` (counted
  from ``Practitioner.date_joined``), ``EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA`` afterwards
  (0: no daily limit). The database is the source of truth: the quota counts the Smart Mail
  deliveries with ``sent_at`` in the window, plus the ones being sent right now and the ones
  a running batch has reserved. A batch claims its share of the quota once, under a lock on
  the practitioner's row (:func:`reserve_smart_mail_quota`), not once a delivery.

A delivery over quota is neither sent nor failed: :mod:`emailsettings.outbox` defers it to
:attr:`Quota.resets_at` and the sweeper wakes it then.

:class:`TokenBucket` is the pace itself: a token bucket per mailbox (or per practitioner's
Smart Mail) shared by every worker through Redis.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from emailsettings import conf
from emailsettings.models import Channel, Delivery, DeliveryStatus
from psicogest.formatting import format_time
from psicogest.models import Practitioner

if TYPE_CHECKING:
    from psicogest.models import Practitioner

logger = logging.getLogger(__name__)

QUOTA_WINDOW = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Quota:
    """A practitioner's Smart Mail daily quota at one moment."""

    # Messages allowed per rolling 24 hours; ``None``: no daily limit.
    limit: int | None
    # Smart Mail messages sent in the last 24 hours (and being sent now).
    used: int
    # When exhausted: when the next message may go (the oldest counted send leaves the
    # window), rounded up to the minute; ``None`` when not exhausted.
    resets_at: datetime.datetime | None
    # End of the warm-up period while the account is still in it, else ``None``.
    warmup_until: datetime.datetime | None

    @property
    def in_warmup(self) -> bool:
        return self.warmup_until is not None

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.used >= self.limit

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


def _ceil_minute(moment: datetime.datetime) -> datetime.datetime:
    floored = moment.replace(second=0, microsecond=0)
    return floored if floored == moment else floored + datetime.timedelta(minutes=1)


def smart_mail_limit(
    *, practitioner: Practitioner, now: datetime.datetime | None = None
) -> tuple[int | None, datetime.datetime | None]:
    """The practitioner's daily limit (``None``: none) and the end of their warm-up while it
    lasts; no query."""
    now = now or timezone.now()
    warmup_end = practitioner.date_joined + datetime.timedelta(days=conf.warmup_days())
    if now < warmup_end and conf.warmup_daily_quota() > 0:
        return conf.warmup_daily_quota(), warmup_end
    return conf.smart_mail_daily_quota() or None, None


def smart_mail_quota(
    *,
    practitioner: Practitioner,
    now: datetime.datetime | None = None,
    excluding: Sequence[int] = (),
) -> Quota:
    """The practitioner's Smart Mail quota now (see the module docstring). ``excluding``:
    rows whose reservation (:func:`reserve_smart_mail_quota`) is not counted, because the
    batch asking is about to reserve them again."""
    now = now or timezone.now()
    limit, warmup_until = smart_mail_limit(practitioner=practitioner, now=now)
    if limit is None:
        return Quota(limit=None, used=0, resets_at=None, warmup_until=None)

    window_start = now - QUOTA_WINDOW
    rows = Delivery.objects.filter(practitioner_id=practitioner.pk, channel=Channel.SMART_MAIL)
    # A row being sent counts too, and so does a row a running batch reserved, so that
    # parallel batches cannot overshoot together.
    reserved = Q(
        lease_expires_at__gt=now, status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
    )
    if excluding:
        reserved &= ~Q(pk__in=list(excluding))
    counted = Q(sent_at__gte=window_start) | Q(status=DeliveryStatus.SENDING) | reserved
    used = rows.filter(counted).count()
    resets_at = None
    if used >= limit:
        # One message may go when ``used - limit + 1`` counted sends have left the window.
        leaving = used - limit
        oldest = list(
            rows.filter(sent_at__gte=window_start)
            .order_by("sent_at")
            .values_list("sent_at", flat=True)[leaving : leaving + 1]
        )
        if oldest and oldest[0] is not None:
            resets_at = _ceil_minute(oldest[0] + QUOTA_WINDOW)
        else:
            # The quota is full of messages still being sent: look again shortly.
            resets_at = _ceil_minute(now + datetime.timedelta(seconds=conf.retry_base_seconds()))
    return Quota(limit=limit, used=used, resets_at=resets_at, warmup_until=warmup_until)


def reserve_smart_mail_quota(
    *,
    practitioner_id: int,
    delivery_ids: Sequence[int],
    until: datetime.datetime,
    now: datetime.datetime | None = None,
) -> tuple[list[int], Quota]:
    """Claim the daily quota for a batch at once: under a lock on the practitioner's row,
    the first of ``delivery_ids`` (waiting Smart Mail rows, oldest first) that fit in the
    quota are reserved until ``until`` and returned with the quota as it is afterwards
    (``resets_at`` set when the rest must wait).

    A reservation is the row's ``lease_expires_at`` while it is still ``queued`` (or due
    ``deferred``): every quota count includes it, so parallel batches cannot overshoot, and
    it lapses by itself when a worker dies. The claim of each row then needs no quota check
    of its own; :func:`release_smart_mail_quota` gives back what the batch did not send."""
    from django.db import transaction

    now = now or timezone.now()
    with transaction.atomic():
        practitioner = (
            Practitioner.objects.select_for_update()
            .only("pk", "date_joined")
            .get(pk=practitioner_id)
        )
        quota = smart_mail_quota(practitioner=practitioner, now=now, excluding=delivery_ids)
        if quota.limit is None:
            return list(delivery_ids), quota
        granted = list(delivery_ids[: quota.remaining])
        if granted:
            Delivery.objects.filter(
                pk__in=granted, status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
            ).update(lease_expires_at=until)
        if len(granted) < len(delivery_ids) and not quota.exhausted:
            # Full now: when the rest may go.
            quota = smart_mail_quota(practitioner=practitioner, now=now)
    return granted, quota


def release_smart_mail_quota(delivery_ids: Sequence[int]) -> int:
    """Give back the reservations of rows a batch did not send (handed over to the next
    batch, or left when the batch stopped)."""
    if not delivery_ids:
        return 0
    return Delivery.objects.filter(
        pk__in=list(delivery_ids),
        status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED),
        lease_expires_at__isnull=False,
    ).update(lease_expires_at=None)


def smart_mail_bucket(*, practitioner_id: int) -> TokenBucket | None:
    """The practitioner's Smart Mail pace (shared by every worker); ``None`` when unpaced."""
    rate = conf.smart_mail_rate_per_minute()
    if rate <= 0:
        return None
    return TokenBucket(key=f"smart_mail:{practitioner_id}", rate_per_minute=rate)


def quota_wait_text(quota: Quota) -> str:
    """The delivery event of a row deferred by the daily quota (plain Italian)."""
    from django.utils.formats import date_format
    from django.utils.translation import gettext as _

    resets_at = timezone.localtime(quota.resets_at or timezone.now())
    values = {
        "date": date_format(resets_at, "d/m/Y"),
        "time": date_format(resets_at, "H:i"),
    }
    if quota.in_warmup:
        return (
            _(
                "Limite giornaliero di Smart Mail raggiunto per i nuovi account: l'invio "
                "riprenderà automaticamente il %(date)s alle %(time)s."
            )
            % values
        )
    return (
        _(
            "Limite giornaliero di Smart Mail raggiunto: l'invio riprenderà automaticamente "
            "il %(date)s alle %(time)s."
        )
        % values
    )


def _opened_key(key: str) -> str:
    return f"{key}:opened"


def within_fixed_window(key: str, *, limit: int, window: int) -> bool:
    """Count one more use of ``key`` in a window of ``window`` seconds opened by the first
    use; ``False`` once more than ``limit`` uses fall in it. ``add`` and ``incr`` are atomic
    on Redis, so concurrent requests cannot both take the last use.

    The window's opening time is kept beside the counter: it says when the window closes
    (:func:`fixed_window_retry_after`), and the counter's expiry is set from it after each
    use, because the file and local-memory caches implement ``incr`` as a ``set`` with the
    default timeout (300 s), which would otherwise close a 10-minute window after 5."""
    now = time.time()
    cache.add(_opened_key(key), now, timeout=window)
    opened = cache.get(_opened_key(key))
    if not isinstance(opened, int | float) or opened > now:
        opened = now
    remaining = max(1, math.ceil(opened + window - now))
    cache.add(key, 0, timeout=remaining)
    try:
        count = cache.incr(key)
    except ValueError:  # the window closed between add() and incr()
        cache.set(key, 1, timeout=remaining)
        count = 1
    cache.touch(key, timeout=remaining)
    return count <= limit


def fixed_window_retry_after(key: str, *, window: int) -> int:
    """Seconds until the window of ``key`` closes (at least 1; ``window`` when unknown)."""
    opened = cache.get(_opened_key(key))
    if not isinstance(opened, int | float):
        return window
    return max(1, min(window, math.ceil(opened + window - time.time())))


def retry_after_text(seconds: int) -> str:
    """ "riprova tra 7 minuti, alle 21:43" (plain Italian, local time)."""
    from django.utils.translation import gettext as _
    from django.utils.translation import ngettext

    at = timezone.localtime(timezone.now() + datetime.timedelta(seconds=seconds))
    minutes = max(1, math.ceil(seconds / 60))
    return _("riprova tra %(wait)s, alle %(time)s") % {
        "wait": ngettext("%(n)s minuto", "%(n)s minuti", minutes) % {"n": minutes},
        "time": format_time(at),
    }


# --- pacing --------------------------------------------------------------------------------

_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'ts', now)
  redis.call('EXPIRE', KEYS[1], 3600)
  return '0'
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring((1 - tokens) / rate)
"""

_local_buckets: dict[str, tuple[float, float]] = {}
_local_lock = threading.Lock()


class TokenBucket:
    """``rate_per_minute`` messages a minute for one mailbox (or one practitioner's Smart
    Mail), across every worker process.

    The state lives in Redis (one hash per mailbox); without Redis (embedded default, or
    Redis unreachable) each process paces itself alone, which is still within the limit
    for a single worker.
    """

    def __init__(self, *, key: str, rate_per_minute: float) -> None:
        self.key = f"emailsettings:bucket:{key}"
        self.rate = max(rate_per_minute, 0.001) / 60.0
        # A short burst is allowed; the long-run pace is the preset's.
        self.capacity = max(1.0, min(rate_per_minute / 6.0, 20.0))
        self._script: Any = None
        url = conf.redis_url()
        if url:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            self._script = client.register_script(_BUCKET_SCRIPT)

    def wait_time(self) -> float:
        """Take one token if there is one (0.0), else the seconds until there will be."""
        import redis

        now = time.time()
        if self._script is not None:
            try:
                return float(self._script(keys=[self.key], args=[self.rate, self.capacity, now]))
            except (redis.RedisError, OSError):  # pacing must never stop a send
                logger.warning("Token bucket: Redis unavailable, pacing locally")
                self._script = None
        with _local_lock:
            tokens, ts = _local_buckets.get(self.key, (self.capacity, now))
            tokens = min(self.capacity, tokens + max(0.0, now - ts) * self.rate)
            if tokens >= 1:
                _local_buckets[self.key] = (tokens - 1, now)
                return 0.0
            _local_buckets[self.key] = (tokens, now)
            return (1 - tokens) / self.rate
