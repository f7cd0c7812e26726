"""Mailbox checks on the settings page: start "Verifica connessione" / "Invia una mail di
prova" (run by a worker) and the JSON status the page polls. The practitioner's own mailbox
only: ``SmtpAccount.objects.owned_by(request.user)``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from emailsettings.exceptions import RateLimited
from emailsettings.failures import Failure
from emailsettings.guidance.account import mailbox_advice
from emailsettings.health import verify as mailbox
from emailsettings.health.verify import TEST_MAIL, VERIFY, check_progress, start_check
from emailsettings.limits import fixed_window_retry_after, retry_after_text
from emailsettings.models import MailboxStatus, Phase, SmtpAccount
from emailsettings.views.cards import card_message
from psicogest.formatting import format_long_datetime


def _account(request: HttpRequest) -> SmtpAccount | None:
    return (
        SmtpAccount.objects.owned_by(request.user)  # type: ignore[arg-type]
        .select_related("practitioner")
        .first()
    )


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _refuse(request: HttpRequest, message: str, status: int) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status)
    card_message(request, "smtp", messages.ERROR, message)
    return redirect(reverse("emailsettings:settings") + "#smtp")


def _rate_limited_message(account: SmtpAccount) -> str:
    """The refusal, with when to try again (the limit's window is counted per practitioner
    in ``emailsettings.health.verify``)."""
    seconds = fixed_window_retry_after(
        mailbox._rate_key(account.practitioner_id), window=mailbox.RATE_LIMIT_WINDOW
    )
    return _(
        "Hai già fatto %(count)s verifiche o mail di prova negli ultimi 10 minuti: per non far "
        "bloccare la tua casella dal provider, %(retry)s."
    ) % {"count": mailbox.RATE_LIMIT_COUNT, "retry": retry_after_text(seconds)}


def _start(request: HttpRequest, kind: str) -> HttpResponse:
    account = _account(request)
    if account is None:
        return _refuse(request, _("Salva prima la configurazione SMTP."), 404)
    if account.uses_oauth and not account.has_credentials:
        return _refuse(request, _("Collega di nuovo l'account prima di verificare."), 400)
    if not account.uses_oauth and account.username and not account.has_password:
        return _refuse(request, _("Inserisci la password e salva prima di verificare."), 400)
    try:
        progress = start_check(account=account, kind=kind)
    except RateLimited:
        return _refuse(request, _rate_limited_message(account), 429)
    if _wants_json(request):
        return JsonResponse(_status_payload(account, progress), status=202)
    card_message(
        request,
        "smtp",
        messages.INFO,
        _("Verifica avviata: il risultato compare qui tra pochi secondi.")
        if kind == VERIFY
        else _("Invio della mail di prova avviato: il risultato compare qui tra pochi secondi."),
    )
    return redirect(reverse("emailsettings:settings") + "#smtp")


@login_required
@require_POST
def verify(request: HttpRequest) -> HttpResponse:
    return _start(request, VERIFY)


@login_required
@require_POST
def test_mail(request: HttpRequest) -> HttpResponse:
    return _start(request, TEST_MAIL)


@login_required
@require_GET
def status(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if account is None:
        return JsonResponse({"error": _("Salva prima la configurazione SMTP.")}, status=404)
    return JsonResponse(_status_payload(account, check_progress(account=account)))


# --- the JSON the page renders ------------------------------------------------------------


# The badge colour of each mailbox state (badge-ok, badge-err, badge-warn).
STATUS_TONES: dict[str, str] = {
    MailboxStatus.OK: "ok",
    MailboxStatus.BROKEN: "err",
    MailboxStatus.UNVERIFIED: "warn",
}


def _display(moment: datetime) -> str:
    return format_long_datetime(moment)


def _status_payload(account: SmtpAccount, progress: dict[str, Any] | None) -> dict[str, Any]:
    finished = max(
        (moment for moment in (account.last_verified_at, account.last_error_at) if moment),
        default=None,
    )
    state, kind, phase = "idle", VERIFY, ""
    elapsed: float | None = None
    if progress:
        kind = str(progress.get("kind", VERIFY))
        started = parse_datetime(str(progress.get("started_at", "")))
        if started:
            # Measured here, not in the browser: a page reloaded mid-check knows the real wait.
            elapsed = round(max(0.0, (timezone.now() - started).total_seconds()), 1)
        state = str(progress.get("state", "queued"))
        phase = str(progress.get("phase", ""))
        if state != "unavailable" and finished and started and finished >= started:
            state = "done"
        elif state == "done":
            # The worker finished but the outcome is older than the request: nothing new.
            state = "idle"
    return {
        "state": state,
        "kind": kind,
        "phase": phase,
        "phase_label": str(Phase(phase).label) if phase in Phase.values and phase else "",
        "elapsed_seconds": elapsed,
        # The mailbox's state after the check, for the badge beside "Stato della casella".
        "status": account.status,
        "status_label": account.status_label,
        "status_tone": STATUS_TONES.get(account.status, "warn"),
        "last_verified_display": (
            format_long_datetime(account.last_verified_at) if account.last_verified_at else ""
        ),
        "result": _result(account, kind=kind) if state in ("done", "idle") else None,
        "message": _("Il servizio di verifica non è disponibile ora: riprova tra poco.")
        if state == "unavailable"
        else "",
    }


def _result(account: SmtpAccount, *, kind: str) -> dict[str, Any] | None:
    ok_at, error_at = account.last_verified_at, account.last_error_at
    if error_at and account.last_error and (ok_at is None or error_at > ok_at):
        failure = Failure.from_dict(account.last_error)
        tip = mailbox_advice(
            account,
            error_class=failure.error_class,
            code=failure.code,
            enhanced=failure.enhanced,
            reply=failure.reply,
        )
        phase = failure.phase
        return {
            "ok": False,
            "at": error_at.isoformat(),
            "at_display": _display(error_at),
            "title": str(tip.title),
            "text": str(tip.text),
            "steps": [str(step) for step in tip.steps],
            "suggest_smart_mail": bool(getattr(tip, "suggest_smart_mail", False)),
            "details": {
                "phase": str(Phase(phase).label) if phase in Phase.values else phase,
                "code": failure.code,
                "enhanced": failure.enhanced,
                "error_class": failure.error_class,
                "reply": failure.reply,
            },
        }
    if ok_at is None:
        return None
    if kind == TEST_MAIL:
        title = _("Mail di prova inviata")
        text = _(
            "Il tuo provider ha accettato la mail di prova per %(email)s: controlla la tua "
            "casella (anche la cartella spam)."
        ) % {"email": account.practitioner.email}
    else:
        title = _("Connessione riuscita")
        text = _(
            "Il server %(host)s ha accettato l'accesso, il mittente %(sender)s e il "
            "destinatario di prova. Nessun messaggio è stato inviato."
        ) % {"host": account.host, "sender": account.email}
    return {
        "ok": True,
        "at": ok_at.isoformat(),
        "at_display": _display(ok_at),
        "title": title,
        "text": text,
        "steps": [],
        "suggest_smart_mail": False,
        "details": None,
    }
