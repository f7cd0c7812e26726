"""The payment reminders' pages: «Regole dei solleciti» (on/off, minimum amount, the invoice
attached, three levels with the ``${keyword}`` editor and a preview for a chosen invoice) and
«In arrivo» (the reminders of the next 14 days, with «Salta» and «Sospendi»).

Every invoice reachable here comes from ``Invoice.objects.owned_by(request.user)``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from emailsettings.covermail.keywords import KEYWORDS
from emailsettings.covermail.reminders import default_texts, texts_for
from emailsettings.covermail.rendering import render_cover_mail
from emailsettings.forms.ids import parse_id
from emailsettings.forms.reminders import PauseForm, ReminderLevelForm, ReminderRulesForm
from emailsettings.limits import within_fixed_window
from emailsettings.models import ReminderLevel, kind_label
from emailsettings.outbox import reminders
from psicogest.models import Invoice, Language, Practitioner

PREVIEW_INVOICE_CHOICES = 100
PREVIEW_RATE_LIMIT_COUNT = 60
PREVIEW_RATE_LIMIT_WINDOW = 60
_TEXT_FIELDS = ("subject_template", "body_template")


def _owned_invoices(request: HttpRequest) -> Any:
    return Invoice.objects.owned_by(request.user).select_related(  # type: ignore[arg-type]
        "patient", "practitioner"
    )


def _has_iban(practitioner: Practitioner) -> bool:
    return bool(practitioner.iban.strip())


def _level_forms(
    practitioner: Practitioner, levels: list[ReminderLevel], data: Any = None
) -> list[ReminderLevelForm]:
    forms = []
    for level in levels:
        subject, body = default_texts(level.level, iban=_has_iban(practitioner))
        initial = {
            "subject_template": level.subject_template or subject,
            "body_template": level.body_template or body,
        }
        forms.append(
            ReminderLevelForm(data, instance=level, prefix=f"l{level.level}", initial=initial)
        )
    return forms


def _preview_invoice(request: HttpRequest, invoices: list[Invoice]) -> Invoice | None:
    wanted = parse_id(request.GET.get("fattura"))
    if wanted is not None:
        return get_object_or_404(_owned_invoices(request), pk=wanted)
    unpaid = [invoice for invoice in invoices if not invoice.is_paid and invoice.due_date]
    candidates = unpaid or invoices
    return candidates[0] if candidates else None


@login_required
@require_http_methods(["GET", "POST"])
def rules_page(request: HttpRequest) -> HttpResponse:
    practitioner: Practitioner = request.user  # type: ignore[assignment]
    rules = reminders.rules_for(practitioner)
    levels = list(rules.levels.order_by("level"))
    if request.method == "POST":
        rules_form = ReminderRulesForm(request.POST, instance=rules)
        level_forms = _level_forms(practitioner, levels, request.POST)
        if rules_form.is_valid() and all(form.is_valid() for form in level_forms):
            with transaction.atomic():
                rules_form.save()
                if practitioner.iban != rules_form.cleaned_data["iban"]:
                    practitioner.iban = rules_form.cleaned_data["iban"]
                    practitioner.save(update_fields=["iban"])
                for form in level_forms:
                    level = form.save(commit=False)
                    # The default text is stored as "the default": it follows the profile
                    # (the IBAN paragraph, with or without) and later improvements.
                    defaults = [default_texts(level.level, iban=iban) for iban in (True, False)]
                    if level.subject_template.strip() in {d[0] for d in defaults}:
                        level.subject_template = ""
                    if level.body_template.strip() in {d[1].strip() for d in defaults}:
                        level.body_template = ""
                    level.save()
            messages.success(request, _("Regole dei solleciti salvate."))
            return redirect("emailsettings:reminders")
        messages.error(
            request, _("Le regole non sono state salvate: correggi gli errori indicati.")
        )
        status = 400
    else:
        rules_form = ReminderRulesForm(instance=rules)
        level_forms = _level_forms(practitioner, levels)
        status = 200
    invoices = list(
        _owned_invoices(request).order_by("-issue_date", "-id")[:PREVIEW_INVOICE_CHOICES]
    )
    invoice = _preview_invoice(request, invoices)
    if invoice is not None and invoice not in invoices:
        invoices.insert(0, invoice)
    previews = []
    for form in level_forms:
        draft = _draft_level(form)
        previews.append(_render_preview(draft, invoice) if invoice is not None else None)
    return render(
        request,
        "emailsettings/reminders_rules.html",
        {
            "rules_form": rules_form,
            "levels": list(zip(level_forms, previews, strict=True)),
            "keywords": KEYWORDS,
            "invoices": invoices,
            "preview_invoice": invoice,
        },
        status=status,
    )


def _draft_level(form: ReminderLevelForm) -> ReminderLevel:
    """The level as written in the form (saved or not), for the preview."""
    level: ReminderLevel = form.instance
    draft = ReminderLevel(level=level.level, days=level.days, enabled=level.enabled)
    prefix = form.prefix or ""
    for name in (*_TEXT_FIELDS, "subject_template_en", "body_template_en"):
        if form.is_bound:
            value = form.data.get(f"{prefix}-{name}", "")
        else:
            value = form.initial.get(name, getattr(level, name))
        setattr(draft, name, str(value or "").replace("\r\n", "\n"))
    return draft


def _render_preview(draft: ReminderLevel, invoice: Invoice) -> dict[str, Any]:
    texts = texts_for(level=draft, patient=invoice.patient, iban=_has_iban(invoice.practitioner))
    rendered = render_cover_mail(
        subject_template=texts.subject, body_template=texts.body, invoice=invoice
    )
    if texts.language == Language.EN:
        version = _("%(name)s riceve la versione in inglese.")
    elif invoice.patient.language == Language.EN:
        version = _(
            "%(name)s preferisce l'inglese, ma questo livello non ha un testo in inglese: "
            "riceve la versione in italiano."
        )
    else:
        version = _("%(name)s riceve la versione in italiano.")
    return {
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "warnings": rendered.warnings,
        "version": version % {"name": invoice.patient.display_name or _("Il paziente")},
        "language": texts.language,
    }


@never_cache
@login_required
@require_POST
def preview(request: HttpRequest) -> JsonResponse:
    """The draft of one level rendered for one of the practitioner's invoices, unsaved."""
    key = f"emailsettings:reminder-previews:{request.user.pk}"
    if not within_fixed_window(
        key, limit=PREVIEW_RATE_LIMIT_COUNT, window=PREVIEW_RATE_LIMIT_WINDOW
    ):
        return JsonResponse(
            {"error": _("Troppe richieste di anteprima: riprova tra poco.")}, status=429
        )
    invoice_id = parse_id(request.POST.get("invoice"))
    level_number = parse_id(request.POST.get("level"))
    if invoice_id is None or level_number is None:
        raise Http404("No invoice or level")
    invoice = get_object_or_404(_owned_invoices(request), pk=invoice_id)
    rules = reminders.rules_for(request.user)  # type: ignore[arg-type]
    level = get_object_or_404(ReminderLevel, rules=rules, level=level_number)
    form = ReminderLevelForm(request.POST, instance=level, prefix=f"l{level.level}")
    errors = {} if form.is_valid() else {name: list(msgs) for name, msgs in form.errors.items()}
    return JsonResponse(
        {"valid": not errors, "errors": errors, **_render_preview(_draft_level(form), invoice)}
    )


@login_required
def upcoming(request: HttpRequest) -> HttpResponse:
    """«In arrivo»: what leaves in the next 14 days, and the invoices whose reminders wait."""
    practitioner: Practitioner = request.user  # type: ignore[assignment]
    rules = reminders.rules_for(practitioner)
    due = reminders.due_reminders(
        practitioner=practitioner, now=timezone.now(), days=reminders.UPCOMING_DAYS
    )
    rows = [
        {
            "due": item,
            "kind": kind_label(item.level),
            "pause_form": PauseForm(prefix=f"p{item.invoice.pk}"),
        }
        for item in due
    ]
    paused = (
        _owned_invoices(request)
        .filter(reminders_paused_until__gte=timezone.localdate(), paid_at__isnull=True)
        .order_by("reminders_paused_until", "pk")
    )
    return render(
        request,
        "emailsettings/reminders_upcoming.html",
        {"rules": rules, "rows": rows, "paused": paused, "days": reminders.UPCOMING_DAYS},
    )


@login_required
@require_POST
def skip(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_object_or_404(_owned_invoices(request), pk=pk)
    level = parse_id(request.POST.get("level"))
    if level is None or not 1 <= level <= 3:
        raise Http404("No level")
    reminders.skip_level(invoice=invoice, level=level)
    messages.success(
        request,
        _("%(kind)s della fattura %(number)s saltato.")
        % {"kind": kind_label(level), "number": invoice.number},
    )
    return redirect("emailsettings:reminders_upcoming")


@login_required
@require_POST
def pause(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_object_or_404(_owned_invoices(request), pk=pk)
    if request.POST.get("resume"):
        reminders.pause(invoice=invoice, until=None, reason="")
        messages.success(
            request, _("Solleciti della fattura %(number)s ripresi.") % {"number": invoice.number}
        )
        return redirect(_back(request, invoice))
    form = PauseForm(request.POST, prefix=f"p{invoice.pk}")
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(
            request,
            _("Solleciti della fattura %(number)s non sospesi: %(errors)s")
            % {"number": invoice.number, "errors": errors},
        )
        return redirect(_back(request, invoice))
    reminders.pause(
        invoice=invoice, until=form.cleaned_data["until"], reason=form.cleaned_data["reason"]
    )
    messages.success(
        request,
        _("Solleciti della fattura %(number)s sospesi fino al %(day)s.")
        % {"number": invoice.number, "day": form.cleaned_data["until"].strftime("%d/%m/%Y")},
    )
    return redirect(_back(request, invoice))


def _back(request: HttpRequest, invoice: Invoice) -> str:
    """Back to the invoice page when the pause was asked there, else to «In arrivo»."""
    if request.POST.get("from") == "invoice":
        return reverse("invoice", args=[invoice.pk])
    return reverse("emailsettings:reminders_upcoming")
