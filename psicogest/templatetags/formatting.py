"""Template filters for amounts, numbers and dates: ``{% load formatting %}``, then
``{{ invoice.total|amount }}`` → ``€ 1.320,00``, ``{{ n|number }}`` → ``20.000``,
``{{ d|short_date }}`` → ``01/12/2026``, ``{{ t|short_datetime }}`` → ``01/12/2026 20:10``,
``{{ t|long_datetime }}`` → ``martedì 1 dicembre 2026, 20:10`` (and ``long_date``).

Thin wrappers of :mod:`psicogest.formatting`; an empty or missing value renders as "".
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

from psicogest import formatting

register = template.Library()


def _numeric(value: Any) -> Decimal | int | float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int | float):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@register.filter
def amount(value: Any) -> str:
    return formatting.format_amount(_numeric(value))


@register.filter
def number(value: Any, decimals: int = 0) -> str:
    return formatting.format_number(_numeric(value), int(decimals))


def _date(value: Any) -> datetime.date | None:
    return value if isinstance(value, datetime.date) else None


def _datetime(value: Any) -> datetime.datetime | None:
    return value if isinstance(value, datetime.datetime) else None


@register.filter
def short_date(value: Any) -> str:
    return formatting.format_date(_date(value))


@register.filter
def short_datetime(value: Any) -> str:
    return formatting.format_datetime(_datetime(value))


@register.filter
def long_date(value: Any) -> str:
    return formatting.format_long_date(_date(value))


@register.filter
def long_datetime(value: Any) -> str:
    return formatting.format_long_datetime(_datetime(value))
