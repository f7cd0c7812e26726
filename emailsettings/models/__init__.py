"""The email module's rows: per-practitioner settings and cover mail, the personal mailbox,
the delivery outbox with its events, and suppressed addresses.

The database is the source of truth for every delivery; Celery only executes.

The models live by concept in :mod:`.account`, :mod:`.delivery`, :mod:`.reminders`,
:mod:`.reputation` (Smart Mail reputation), :mod:`.securelink` and :mod:`.tracking`; every
name is importable from here.
"""

from emailsettings.models.account import (
    AuthMethod,
    Channel,
    EmailSettings,
    MailboxStatus,
    Security,
    SenderDomain,
    SmtpAccount,
)
from emailsettings.models.delivery import (
    Delivery,
    DeliveryCount,
    DeliveryEvent,
    DeliveryQuerySet,
    DeliveryStatus,
    EventKind,
    Phase,
    RecipientRole,
    kind_label,
    stored_counts,
)
from emailsettings.models.reminders import ReminderLevel, ReminderRules, ReminderSkip
from emailsettings.models.reputation import Reputation, ReputationLift, ReputationState
from emailsettings.models.securelink import SecureLink
from emailsettings.models.tracking import (
    MailboxFolderState,
    PecReceipt,
    SentCopy,
    SentCopyState,
    SuppressedAddress,
    WebhookEvent,
    WebhookState,
)

__all__ = [
    "AuthMethod",
    "Channel",
    "Delivery",
    "DeliveryCount",
    "DeliveryEvent",
    "DeliveryQuerySet",
    "DeliveryStatus",
    "EmailSettings",
    "EventKind",
    "MailboxFolderState",
    "MailboxStatus",
    "PecReceipt",
    "Phase",
    "RecipientRole",
    "ReminderLevel",
    "ReminderRules",
    "ReminderSkip",
    "Reputation",
    "ReputationLift",
    "ReputationState",
    "SecureLink",
    "Security",
    "SenderDomain",
    "SentCopy",
    "SentCopyState",
    "SmtpAccount",
    "SuppressedAddress",
    "WebhookEvent",
    "WebhookState",
    "kind_label",
    "stored_counts",
]
