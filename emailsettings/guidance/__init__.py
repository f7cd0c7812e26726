"""Italian advice for a classified failure (see smtp-errors.md): what happened and what to do.

The failure is classified once, where it happens (``mailbox.classify.classify``, the Smart Mail
sender, the webhook mapping): :func:`advice` reads its class and only picks a variant
by provider or wording within that class. Provider facts (Google/Microsoft family, where an
app password is created, sending limits) live on the presets (``emailsettings/mailbox/presets.py``).
``ErrorClass`` is re-exported here for the callers that know it from this module.

The advice itself lives by what failed: :mod:`.login` (a refused login), :mod:`.mailbox`
(the mailbox's connection and its server's replies) and :mod:`.outcomes` (Smart Mail,
bounces and the outbox's own outcomes).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from emailsettings.failures import ErrorClass
from emailsettings.guidance.base import Advice
from emailsettings.guidance.mailbox import provider_of, smtp_advice
from emailsettings.guidance.outcomes import outbox, smart_mail, unknown
from emailsettings.mailbox.presets import get_preset

__all__ = ["Advice", "ErrorClass", "advice", "provider_name"]


def provider_name(preset_key: str | None) -> str:
    preset = get_preset(preset_key)
    if preset is None or preset.key in ("custom", "local"):
        return str(_("il tuo provider"))
    return str(preset.label)


def advice(
    *,
    error_class: str,
    preset_key: str | None,
    code: int | None = None,
    enhanced: str | None = None,
    reply: str = "",
    channel: str | None = None,
    port: int | None = None,
    after_data: bool = False,
) -> Advice:
    """Italian advice for a classified failure on ``channel`` ("smtp", "smart_mail", or
    ``None`` for a mailbox check), naming the provider. ``port`` is the mailbox's port
    when known (the advice about port 25 is only for port 25)."""
    enhanced = enhanced or ""
    reply = reply or ""
    found = outbox(error_class, channel=channel)
    if found is not None:
        return found
    if channel == "smart_mail":
        found = smart_mail(error_class, code)
        if found is not None:
            return found
        if error_class == ErrorClass.UNKNOWN:
            return unknown(str(_("il servizio di invio")), after_data=after_data)
    provider = provider_of(preset_key, reply)
    name = (
        str(provider.label)
        if provider is not None and provider.key not in ("custom", "local")
        else str(_("il tuo provider"))
    )
    found = smtp_advice(
        error_class,
        provider=provider,
        name=name,
        code=code,
        enhanced=enhanced,
        reply=reply,
        port=port,
    )
    return found if found is not None else unknown(name, after_data=after_data)
