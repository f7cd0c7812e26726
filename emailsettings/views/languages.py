"""«Mail di accompagnamento in inglese»: the English version of the cover mail, for patients
whose card says English, with the keyword panel and a preview for one of their invoices."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from emailsettings.covermail.keywords import COVER_MAIL_KEYWORDS
from emailsettings.covermail.languages import cover_mail_texts, english_cover_mail
from emailsettings.covermail.rendering import render_cover_mail
from emailsettings.forms.languages import EnglishCoverMailForm
from emailsettings.models import EmailSettings
from psicogest.models import Invoice, Language, Practitioner


@login_required
@require_http_methods(["GET", "POST"])
def english_cover_mail_page(request: HttpRequest) -> HttpResponse:
    practitioner: Practitioner = request.user  # type: ignore[assignment]
    if request.method == "POST":
        form = EnglishCoverMailForm(request.POST)
        if form.is_valid():
            row, _created = EmailSettings.objects.get_or_create(practitioner=practitioner)
            row.subject_template_en = form.cleaned_data["subject_template_en"]
            row.body_template_en = form.cleaned_data["body_template_en"]
            row.save(update_fields=["subject_template_en", "body_template_en", "updated_at"])
            messages.success(request, _("Mail di accompagnamento in inglese salvata."))
            return redirect("emailsettings:covermail_english")
        status = 400
    else:
        subject, body = english_cover_mail(practitioner)
        form = EnglishCoverMailForm(
            initial={"subject_template_en": subject, "body_template_en": body}
        )
        status = 200
    invoice = (
        Invoice.objects.owned_by(practitioner)  # type: ignore[arg-type]
        .filter(patient__language=Language.EN)
        .select_related("patient", "practitioner")
        .order_by("-issue_date", "-id")
        .first()
    )
    preview = version = None
    if invoice is not None and not form.is_bound:
        texts = cover_mail_texts(practitioner=practitioner, patient=invoice.patient)
        preview = render_cover_mail(
            subject_template=texts.subject, body_template=texts.body, invoice=invoice
        )
        version = texts.language
    return render(
        request,
        "emailsettings/covermail_english.html",
        {
            "form": form,
            "keywords": COVER_MAIL_KEYWORDS,
            "preview_invoice": invoice,
            "preview": preview,
            "version": version,
        },
        status=status,
    )
