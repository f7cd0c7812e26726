"""What every reader of mail that comes back checks before it believes anything: the mail
is written by anyone. Bounded cost (size, MIME structure) and bounded values (dates).

To add a check, keep it linear in the message's size and free of recursion: it runs before
any parser sees the message.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import Any

from django.utils import timezone

from emailsettings import conf

# A Message-ID as it stands in a header: "<…>", no spaces, of a sane length.
MESSAGE_ID = re.compile(r"<[^<>\s]{3,250}>")
# "Content-Type: multipart/…" at the start of a header line, folded or not.
_MULTIPART = re.compile(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?multipart/")
# How far from now a date read on the wire may be: the watch window is days, a receipt a
# few minutes old; clocks and zones may be off by hours.
_PAST = datetime.timedelta(days=400)
_FUTURE = datetime.timedelta(days=1)
# RFC 5322 zones in practice: UTC-12 to UTC+14.
_MAX_OFFSET = datetime.timedelta(hours=14)


def too_complex(raw: bytes) -> bool:
    """Whether ``raw`` declares more multipart containers than a notice ever has
    (``EMAILSETTINGS_MAILBOX_MAX_MULTIPARTS``): parsing such a message costs recursion and
    time out of proportion to its size, and no bounce or receipt looks like it."""
    limit = conf.mailbox_max_multiparts()
    count = 0
    for _match in _MULTIPART.finditer(raw):
        count += 1
        if count > limit:
            return True
    return False


def header_date(value: Any) -> datetime.datetime | None:
    """A ``Date`` header's moment, or None."""
    try:
        parsed = email.utils.parsedate_to_datetime(str(value or ""))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def sane_date(moment: datetime.datetime | None) -> datetime.datetime | None:
    """``moment`` when it is a date a real notice carries — aware, its offset within ±14 h,
    between 400 days ago and tomorrow — else None. The database and the report never see
    year 1 or 9999."""
    if moment is None or moment.tzinfo is None:
        return None
    offset = moment.utcoffset()
    if offset is None or abs(offset) > _MAX_OFFSET:
        return None
    try:
        now = timezone.now()
        if not now - _PAST <= moment <= now + _FUTURE:
            return None
    except OverflowError:
        return None
    return moment
