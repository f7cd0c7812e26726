"""Template context shared by every page: the broken-mailbox banner."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def mailbox_banner(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from .models import MailboxStatus, SmtpAccount

    account = (
        SmtpAccount.objects.filter(practitioner=user, status=MailboxStatus.BROKEN)
        .only("id", "email", "last_error")
        .first()
    )
    return {"broken_mailbox": account}
