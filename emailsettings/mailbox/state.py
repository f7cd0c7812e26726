"""The mailbox's health row (``SmtpAccount.status``, ``last_error``, ``unreachable_since``),
of which this module is the only writer: checks, sends and configuration changes all report
here.

Each writer returns what changed (:class:`Health`); the caller decides what the outbox does
about it (:func:`emailsettings.outbox.actions.follow_mailbox_health`: a working mailbox
releases its held invoices, a broken one holds what is still waiting).
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Any

from django.utils import timezone

from emailsettings import conf
from emailsettings.failures import Failure
from emailsettings.models import MailboxStatus, SmtpAccount

logger = logging.getLogger(__name__)


class Health(enum.Enum):
    """What a write did to the mailbox's health."""

    OK = "ok"  # it works: what was held may leave
    BROKEN = "broken"  # it needs the practitioner: hold what is waiting
    NOTED = "noted"  # a failure is noted, the mailbox still counts as working


def set_health(
    account: SmtpAccount,
    *,
    healthy: bool,
    failure: Failure | None = None,
    verified_at: datetime | None = None,
) -> Health:
    """Write the mailbox's health with a conditional update (the row may have been edited
    meanwhile: only these fields are written)."""
    now = timezone.now()
    changes: dict[str, Any] = {}
    if failure is None:
        changes = {"status": MailboxStatus.OK, "last_error": {}, "unreachable_since": None}
        if verified_at is not None:
            changes["last_verified_at"] = verified_at
    else:
        changes = {"last_error_at": now, "last_error": failure.as_dict()}
        if not healthy:
            changes["status"] = MailboxStatus.BROKEN
    SmtpAccount.objects.filter(pk=account.pk).update(**changes, updated_at=now)
    for name, value in changes.items():
        setattr(account, name, value)
    if failure is None:
        return Health.OK
    return Health.NOTED if healthy else Health.BROKEN


def forget_checks(account: SmtpAccount) -> None:
    """The connection settings changed: the last check was about other settings (the
    caller saves the row)."""
    account.status = MailboxStatus.UNVERIFIED
    account.last_error = {}
    account.last_error_at = None
    account.unreachable_since = None


def record_send_success(*, account: SmtpAccount) -> Health | None:
    """A message went out through the mailbox: it works (written only when that is news)."""
    if account.status == MailboxStatus.OK and account.unreachable_since is None:
        return None
    return set_health(account, healthy=True)


def record_send_failure(*, account: SmtpAccount, failure: Failure) -> Health:
    """A send found the mailbox misconfigured: broken."""
    return set_health(account, healthy=False, failure=failure)


def record_unreachable(*, account: SmtpAccount, failure: Failure) -> Health | None:
    """A send could not reach the server. Temporary at first (None); once it has lasted
    ``EMAILSETTINGS_MAILBOX_UNREACHABLE_SECONDS`` the mailbox is broken."""
    now = timezone.now()
    since = account.unreachable_since
    if since is None:
        SmtpAccount.objects.filter(pk=account.pk, unreachable_since__isnull=True).update(
            unreachable_since=now
        )
        account.unreachable_since = now
        return None
    if (now - since).total_seconds() < conf.mailbox_unreachable_seconds():
        return None
    logger.info("Mailbox %s unreachable since %s: held", account.pk, since.isoformat())
    return set_health(account, healthy=False, failure=failure)
