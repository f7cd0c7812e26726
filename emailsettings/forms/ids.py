"""Row ids read from request data (query strings, form posts): one parser for every view.

An id is 1 to 19 ASCII digits naming a positive number within the database's ``bigint``.
``str.isdigit()`` alone is not enough: it accepts "²" (which ``int()`` then refuses, a 500),
and ``int()`` alone accepts "١" (Arabic-Indic one), "+7", " 7" and "1_000". Views turn
``None`` into a 404 (or ignore the value where junk is expected, like the report's refresh).
"""

from __future__ import annotations

from typing import Any

# PostgreSQL's bigint, the type of every primary key (DEFAULT_AUTO_FIELD = BigAutoField).
MAX_ID = 2**63 - 1


def parse_id(value: Any) -> int | None:
    """``"42"`` → 42; anything else (empty, a sign, spaces, non-ASCII digits, 0, beyond
    ``bigint``, not a string) → ``None``."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    if len(value) > len(str(MAX_ID)):
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None
