"""When an invoice mail may leave: the time chosen on the confirmation page ("Invia il …")
and the practitioner's sending window (e.g. Monday to Friday, 8–20).

A row whose release time is in the future is created ``scheduled``; the sweeper releases
it to the queue once the time has come (``lifecycle.release_scheduled``). The window is
read when the rows are created: a window changed later does not move rows already
scheduled. Times are those of the practice (``TIME_ZONE``).
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import holidays
from django.utils import timezone
from django.utils.dates import WEEKDAYS_ABBR

from emailsettings.models import EmailSettings

if TYPE_CHECKING:
    from emailsettings.models import EmailSettings
    from psicogest.models import Practitioner

# The farthest a mail can be scheduled: a typo in the year should not park it for years.
MAX_DAYS_AHEAD = 366


@dataclass(frozen=True)
class SendingWindow:
    """Days (Monday = 0) and hours ``[start, end)`` during which invoices are released."""

    days: frozenset[int]
    start: datetime.time
    end: datetime.time

    def contains(self, moment: datetime.datetime) -> bool:
        local = timezone.localtime(moment)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def next_opening(self, moment: datetime.datetime) -> datetime.datetime:
        """``moment`` itself when inside the window, otherwise the window's next start."""
        if self.contains(moment):
            return moment
        local = timezone.localtime(moment)
        for offset in range(8):
            day = local.date() + datetime.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = timezone.make_aware(datetime.datetime.combine(day, self.start), local.tzinfo)
            if opening > moment:
                return opening
        return moment  # no day at all: unreachable for a saved window

    def describe(self) -> str:
        """ "lun, mar, mer, gio, ven dalle 08:00 alle 20:00"."""
        from django.utils.translation import gettext

        days = ", ".join(str(WEEKDAYS_ABBR[day]) for day in sorted(self.days))
        return gettext("%(days)s dalle %(start)s alle %(end)s") % {
            "days": days,
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }


def window_of(settings_row: EmailSettings | None) -> SendingWindow | None:
    if settings_row is None or not settings_row.window_days:
        return None
    if settings_row.window_start is None or settings_row.window_end is None:
        return None
    days = frozenset(int(char) for char in settings_row.window_days if char in "0123456")
    if not days or settings_row.window_start >= settings_row.window_end:
        return None
    return SendingWindow(days=days, start=settings_row.window_start, end=settings_row.window_end)


def sending_window(practitioner: Practitioner) -> SendingWindow | None:
    """The practitioner's sending window, or ``None`` when invoices leave at any time."""
    return window_of(EmailSettings.objects.filter(practitioner=practitioner).first())


def release_time(
    *,
    window: SendingWindow | None,
    send_at: datetime.datetime | None,
    now: datetime.datetime | None = None,
) -> datetime.datetime | None:
    """When rows created now are released: ``None`` for at once, otherwise the chosen time
    (``send_at``) moved to the window's next opening when it falls outside it."""
    now = now or timezone.now()
    moment = max(send_at, now) if send_at is not None else now
    if window is not None:
        moment = window.next_opening(moment)
    return moment if moment > now else None


# --- working days (payment reminders) ------------------------------------------------------

# Reminders leave on working days only; without a sending window of the practitioner's,
# during office hours.
OFFICE_HOURS = SendingWindow(
    days=frozenset(range(5)), start=datetime.time(9, 0), end=datetime.time(18, 0)
)


@functools.lru_cache(maxsize=16)
def _italian_holidays(year: int) -> frozenset[datetime.date]:
    return frozenset(holidays.country_holidays("IT", years=year))


def is_holiday(day: datetime.date) -> bool:
    """An Italian public holiday (national ones, Easter Monday included)."""
    return day in _italian_holidays(day.year)


def is_working_day(day: datetime.date, window: SendingWindow | None = None) -> bool:
    """Monday to Friday, not a public holiday, and one of the window's days."""
    days = (window or OFFICE_HOURS).days
    return day.weekday() < 5 and day.weekday() in days and not is_holiday(day)


def next_working_day(day: datetime.date, window: SendingWindow | None = None) -> datetime.date:
    """``day`` itself when it is a working day, otherwise the next one."""
    for _offset in range(MAX_DAYS_AHEAD):
        if is_working_day(day, window):
            return day
        day += datetime.timedelta(days=1)
    return day  # a window without weekdays: nothing is ever a working day


def reminder_window(practitioner: Practitioner) -> SendingWindow:
    """When the practitioner's reminders may leave: their sending window, or office hours."""
    return sending_window(practitioner) or OFFICE_HOURS
