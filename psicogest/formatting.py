"""How PsicoGest writes amounts, numbers and dates, everywhere: pages and cover mails.

One place, so that the invoice list, the settings page and the mail a patient receives agree:
``€ 1.320,00``, ``20.000``, ``01/12/2026``, ``martedì 1 dicembre 2026, 20:10``.
Amounts and numbers always use the Italian convention (the invoices are Italian whatever
language the page is in); day and month names follow the page's language, lower case in
Italian ("martedì", "dicembre") as Italian spelling wants.

Templates use the filters of ``psicogest/templatetags/formatting.py`` (``{% load formatting
%}``); Python code calls these functions. To add a format: a function here, a filter there,
and a test in ``tests/psicogest/test_formatting.py``.
"""

from __future__ import annotations

import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone
from django.utils.dates import MONTHS, WEEKDAYS
from django.utils.translation import get_language

Number = Decimal | int | float


def _italian_grouping(value: Number, decimals: int) -> str:
    """``1234.5`` → ``1.234,50`` (dot for thousands, comma for decimals)."""
    quantum = Decimal(1).scaleb(-decimals)
    amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    amount = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    grouped = f"{abs(amount):,.{decimals}f}"  # 1,234.50
    return sign + grouped.replace(",", "\0").replace(".", ",").replace("\0", ".")


def format_amount(value: Number | None) -> str:
    """Euro amount, ``€ 1.234,56``; empty for no value."""
    if value is None:
        return ""
    return f"€ {_italian_grouping(value, 2)}"


def format_number(value: Number | None, decimals: int = 0) -> str:
    """A count or a quantity with Italian grouping, ``20.000`` (``1.234,5`` with decimals)."""
    if value is None:
        return ""
    return _italian_grouping(value, decimals)


def _local(value: datetime.datetime) -> datetime.datetime:
    return timezone.localtime(value) if timezone.is_aware(value) else value


def format_date(value: datetime.date | None) -> str:
    """Short date, ``02/11/2026`` (gg/mm/aaaa); a datetime is shown in local time."""
    if not value:
        return ""
    if isinstance(value, datetime.datetime):
        value = _local(value)
    return value.strftime("%d/%m/%Y")


def format_datetime(value: datetime.datetime | None) -> str:
    """Short date and time in local time, ``02/11/2026 20:10``."""
    if not value:
        return ""
    return _local(value).strftime("%d/%m/%Y %H:%M")


def format_time(value: datetime.datetime | None) -> str:
    """Time of day in local time, ``20:10``."""
    if not value:
        return ""
    return _local(value).strftime("%H:%M")


def _names(value: datetime.date) -> tuple[str, str]:
    weekday, month = str(WEEKDAYS[value.weekday()]), str(MONTHS[value.month])
    if (get_language() or "it").startswith("it"):
        return weekday.lower(), month.lower()
    return weekday, month


def format_long_date(value: datetime.date | None) -> str:
    """``martedì 1 dicembre 2026`` (names in the page's language)."""
    if not value:
        return ""
    if isinstance(value, datetime.datetime):
        value = _local(value)
    weekday, month = _names(value)
    return f"{weekday} {value.day} {month} {value.year}"


def format_long_datetime(value: datetime.datetime | None) -> str:
    """``martedì 1 dicembre 2026, 20:10`` in local time."""
    if not value:
        return ""
    local = _local(value)
    return f"{format_long_date(local)}, {local:%H:%M}"
