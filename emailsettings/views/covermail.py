"""Section "Mail di accompagnamento" of the settings page: the subject/body editor with the
keyword panel, save, restore default, and the live preview (a JSON endpoint).

Every invoice reachable here comes from ``Invoice.objects.owned_by(request.user)``. A draft
over its length limit is never rendered (only the length error comes back), and the preview
is rate-limited per practitioner (``PREVIEW_RATE_LIMIT_COUNT`` a minute, then a 429).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from emailsettings.covermail.keywords import COVER_MAIL_KEYWORDS, KEYWORDS
from emailsettings.covermail.rendering import (
    RenderedMail,
    cover_mail_templates_for,
    render_cover_mail,
    restore_default_cover_mail,
    save_cover_mail,
)
from emailsettings.covermail.validation import length_error
from emailsettings.forms.covermail import CoverMailForm
from emailsettings.forms.ids import parse_id
from emailsettings.limits import fixed_window_retry_after, within_fixed_window
from emailsettings.views.cards import card_message, refuse, refused_data
from psicogest.models import Invoice

# The preview's invoice list shows the most recent ones; any owned invoice id is accepted.
PREVIEW_INVOICE_CHOICES = 100
# The editor asks for a preview 300 ms after the last keystroke: a minute of steady typing
# stays well within this; a script posting drafts in a loop does not.
PREVIEW_RATE_LIMIT_COUNT = 60
PREVIEW_RATE_LIMIT_WINDOW = 60


def _preview_rate_key(practitioner_id: int) -> str:
    return f"emailsettings:covermail-previews:{practitioner_id}"


def _owned_invoices(request: HttpRequest) -> Any:
    return Invoice.objects.owned_by(request.user).select_related(  # type: ignore[arg-type]
        "patient", "practitioner"
    )


def _draft(form: CoverMailForm) -> tuple[str, str]:
    """What is in the editors: the submitted text of a bound form, else the initial text."""
    if form.is_bound:
        return (
            form.data.get("subject_template", ""),
            form.data.get("body_template", "").replace("\r\n", "\n"),
        )
    return (form.initial["subject_template"], form.initial["body_template"])


def _too_long(subject: str, body: str) -> bool:
    """Whether a draft is over a length limit: then it is not rendered (the length error
    under the editor says why), so an oversized post costs no pattern matching."""
    # Measured as the form measures them (CharField strips the value).
    return (
        length_error(subject.strip(), subject=True) is not None
        or length_error(body.strip()) is not None
    )


def preview_warnings(rendered: RenderedMail, *, has_errors: bool) -> list[str]:
    """The preview's warnings; keywords that do not exist are already errors under the
    editor, so they are not said a second time."""
    if not has_errors:
        return rendered.warnings
    return [warning for warning in rendered.warnings if warning != rendered.unknown_warning]


def patient_fix(invoice: Invoice, rendered: RenderedMail) -> dict[str, str] | None:
    """The link to the patient card when the preview misses a value that comes from it
    (salutation, names), so the practitioner can fix it there."""
    missing = {str(keyword.empty_warning) for keyword in KEYWORDS if keyword.source == "patient"}
    if not missing.intersection(rendered.warnings):
        return None
    back = reverse("emailsettings:settings") + "#covermail"
    return {
        "url": reverse("patient_edit", args=[invoice.patient_id]) + "?" + urlencode({"next": back}),
        "label": _("Completa la scheda paziente di %(name)s")
        % {"name": invoice.patient.display_name or _("questo paziente")},
    }


def section_context(request: HttpRequest, **overrides: Any) -> dict[str, Any]:
    form = overrides.get("covermail_form")
    if form is None and (refused := refused_data(request, "covermail")):
        form = CoverMailForm(refused[0])
        form.is_valid()
    if form is None:
        subject, body = cover_mail_templates_for(request.user)  # type: ignore[arg-type]
        form = CoverMailForm(initial={"subject_template": subject, "body_template": body})
    invoices = list(
        _owned_invoices(request).order_by("-issue_date", "-id")[:PREVIEW_INVOICE_CHOICES]
    )
    preview_invoice = invoices[0] if invoices else None
    preview = None
    subject, body = _draft(form)
    if preview_invoice is not None and not _too_long(subject, body):
        preview = render_cover_mail(
            subject_template=subject, body_template=body, invoice=preview_invoice
        )
    return {
        "covermail_form": form,
        "covermail_keywords": COVER_MAIL_KEYWORDS,
        "covermail_invoices": invoices,
        "covermail_preview_invoice": preview_invoice,
        "covermail_preview": preview,
        "covermail_preview_warnings": (
            preview_warnings(preview, has_errors=bool(form.is_bound and form.errors))
            if preview
            else []
        ),
        "covermail_patient_fix": (
            patient_fix(preview_invoice, preview) if preview_invoice and preview else None
        ),
    }


def _section_url() -> str:
    return reverse("emailsettings:settings") + "#covermail"


@login_required
@require_POST
def save(request: HttpRequest) -> HttpResponse:
    form = CoverMailForm(request.POST)
    if form.is_valid():
        try:
            save_cover_mail(
                practitioner=request.user,  # type: ignore[arg-type]
                subject_template=form.cleaned_data["subject_template"],
                body_template=form.cleaned_data["body_template"],
            )
        except ValidationError as err:
            form.add_error(None, err)
    if not form.is_valid():
        card_message(
            request,
            "covermail",
            messages.ERROR,
            _("La mail di accompagnamento non è stata salvata: correggi gli errori indicati."),
        )
        return refuse(request, "covermail", request.POST)
    card_message(request, "covermail", messages.SUCCESS, _("Mail di accompagnamento salvata."))
    return redirect(_section_url())


@login_required
@require_POST
def restore_default(request: HttpRequest) -> HttpResponse:
    restore_default_cover_mail(practitioner=request.user)  # type: ignore[arg-type]
    card_message(
        request,
        "covermail",
        messages.SUCCESS,
        _("Ripristinato il testo predefinito della mail di accompagnamento."),
    )
    return redirect(_section_url())


@never_cache
@login_required
@require_POST
def preview(request: HttpRequest) -> JsonResponse:
    """Render the draft in the editors for one of the practitioner's invoices, without
    saving. Validation problems come back as ``errors`` next to the rendering; a draft over
    a length limit comes back with its errors only."""
    rate_key = _preview_rate_key(request.user.pk)  # type: ignore[arg-type]
    if not within_fixed_window(
        rate_key, limit=PREVIEW_RATE_LIMIT_COUNT, window=PREVIEW_RATE_LIMIT_WINDOW
    ):
        seconds = fixed_window_retry_after(rate_key, window=PREVIEW_RATE_LIMIT_WINDOW)
        refused = JsonResponse(
            {
                "error": ngettext(
                    "Troppe richieste di anteprima in poco tempo: l'anteprima si aggiornerà "
                    "di nuovo tra %(seconds)s secondo.",
                    "Troppe richieste di anteprima in poco tempo: l'anteprima si aggiornerà "
                    "di nuovo tra %(seconds)s secondi.",
                    seconds,
                )
                % {"seconds": seconds}
            },
            status=429,
        )
        refused["Retry-After"] = str(seconds)
        return refused
    invoice_id = parse_id(request.POST.get("invoice"))
    if invoice_id is None:
        raise Http404("No invoice")
    invoice = get_object_or_404(_owned_invoices(request), pk=invoice_id)
    form = CoverMailForm(request.POST)
    # Validation checks each length before any pattern, so this is cheap for any post.
    errors = {} if form.is_valid() else {name: list(msgs) for name, msgs in form.errors.items()}
    subject, body = _draft(form)
    if _too_long(subject, body):
        return JsonResponse(
            {
                "valid": False,
                "errors": errors,
                "subject": "",
                "text": "",
                "html": "",
                "warnings": [],
                "patient_fix": None,
            }
        )
    rendered = render_cover_mail(subject_template=subject, body_template=body, invoice=invoice)
    return JsonResponse(
        {
            "valid": not errors,
            "errors": errors,
            "subject": rendered.subject,
            "text": rendered.text,
            "html": rendered.html,
            "warnings": preview_warnings(rendered, has_errors=bool(errors)),
            "patient_fix": patient_fix(invoice, rendered),
        }
    )
