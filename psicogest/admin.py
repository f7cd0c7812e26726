from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from psicogest.models import Invoice, Patient, Practitioner


@admin.register(Practitioner)
class PractitionerAdmin(UserAdmin):
    ordering = ["email"]
    list_display = ["email", "title", "first_name", "last_name", "practice_name", "is_staff"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profilo", {"fields": ("title", "first_name", "last_name", "practice_name", "iban")}),
        ("Permessi", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["__str__", "salutation", "email", "practitioner"]
    search_fields = ["first_name", "last_name", "company_name", "email"]
    list_filter = ["salutation"]


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "patient",
        "issue_date",
        "total",
        "paid_at",
        "last_emailed_at",
        "practitioner",
    ]
    search_fields = ["number"]
    raw_id_fields = ["patient"]
    # PDFs are served only through the practitioner-scoped view, never under /media/: the
    # admin shows the stored file's name without a link.
    exclude = ["pdf"]
    readonly_fields = ["pdf_file"]

    @admin.display(description="PDF")
    def pdf_file(self, invoice: Invoice) -> str:
        return invoice.pdf.name if invoice.pdf else "—"
