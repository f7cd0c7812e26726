"""Whether an invoice is paid: the host's one place that changes its payment state.

Payment reminders (``emailsettings.outbox.reminders``) read ``Invoice.paid_at`` and
``Invoice.amount_due`` again at the moment a reminder would leave, so marking an invoice paid
here stops every reminder still waiting for it.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.utils import timezone

from psicogest.models import Invoice


def mark_paid(*, invoice: Invoice, paid_at: datetime.datetime | None = None) -> Invoice:
    """Mark ``invoice`` paid in full (now, unless ``paid_at`` says when)."""
    moment = paid_at or timezone.now()
    Invoice.objects.filter(pk=invoice.pk).update(paid_at=moment, amount_paid=invoice.total)
    invoice.paid_at = moment
    invoice.amount_paid = invoice.total
    return invoice


def mark_unpaid(*, invoice: Invoice) -> Invoice:
    """Undo :func:`mark_paid` (a payment recorded by mistake): nothing is paid."""
    Invoice.objects.filter(pk=invoice.pk).update(paid_at=None, amount_paid=Decimal(0))
    invoice.paid_at = None
    invoice.amount_paid = Decimal(0)
    return invoice
