from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from emailsettings.health.reputation import lift_suspension
from emailsettings.models import (
    Delivery,
    DeliveryEvent,
    EmailSettings,
    ReminderLevel,
    ReminderRules,
    Reputation,
    ReputationLift,
    ReputationState,
    SmtpAccount,
    SuppressedAddress,
)


@admin.register(EmailSettings)
class EmailSettingsAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "channel", "updated_at"]


@admin.register(SmtpAccount)
class SmtpAccountAdmin(admin.ModelAdmin):
    list_display = ["email", "preset", "host", "port", "security", "status", "practitioner"]
    exclude = ["password_encrypted"]


class DeliveryEventInline(admin.TabularInline):
    model = DeliveryEvent
    extra = 0
    can_delete = False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "invoice_number",
        "recipient",
        "reminder_level",
        "channel",
        "status",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "channel", "reminder_level"]
    search_fields = ["recipient", "invoice_number", "message_id"]
    raw_id_fields = ["invoice", "patient", "practitioner", "resend_of"]
    exclude = ["body_text", "body_html"]
    inlines = [DeliveryEventInline]


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(admin.ModelAdmin):
    list_display = ["address", "reason", "practitioner", "created_at"]


class ReminderLevelInline(admin.StackedInline):
    model = ReminderLevel
    extra = 0
    max_num = 3


@admin.register(ReminderRules)
class ReminderRulesAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "enabled", "minimum_amount", "attach_invoice", "updated_at"]
    list_filter = ["enabled"]
    inlines = [ReminderLevelInline]


# --- the Smart Mail reputation guard (the operator's side) ----------------------------------


@admin.register(Reputation)
class ReputationAdmin(admin.ModelAdmin):
    """Practitioners by reputation state, with the worst window's rates and volume."""

    list_display = [
        "practitioner",
        "state",
        "window_days",
        "recipients",
        "bounced",
        "bounce_percent",
        "complained",
        "complaint_percent",
        "changed_at",
        "checked_at",
    ]
    list_filter = ["state"]
    search_fields = ["practitioner__email"]
    ordering = ["-state", "-changed_at"]
    readonly_fields = [field.name for field in Reputation._meta.fields]

    @admin.display(description=_("rimbalzi %"))
    def bounce_percent(self, row: Reputation) -> str:
        return f"{100 * row.bounce_rate:.2f}"

    @admin.display(description=_("segnalazioni %"))
    def complaint_percent(self, row: Reputation) -> str:
        return f"{100 * row.complaint_rate:.2f}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReputationLiftForm(forms.ModelForm):
    class Meta:
        model = ReputationLift
        fields = ["practitioner", "note"]

    def clean_practitioner(self) -> Any:
        practitioner = self.cleaned_data["practitioner"]
        if not Reputation.objects.filter(
            practitioner=practitioner, state=ReputationState.SUSPENDED
        ).exists():
            raise forms.ValidationError(_("Smart Mail non è sospeso per questo professionista."))
        return practitioner


@admin.register(ReputationLift)
class ReputationLiftAdmin(admin.ModelAdmin):
    """Lifting a suspension: add one, with a note. Kept as written (the audit trail)."""

    form = ReputationLiftForm
    list_display = ["practitioner", "lifted_by", "created_at", "note"]
    search_fields = ["practitioner__email", "note"]
    raw_id_fields = ["practitioner"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None:
            return ["practitioner", "lifted_by", "note", "created_at", "numbers"]
        return []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        lift_suspension(
            practitioner=obj.practitioner,
            by=request.user,  # type: ignore[arg-type]
            note=obj.note,
        )
        # The service wrote the row; the admin's change message and redirect need it.
        saved = ReputationLift.objects.filter(practitioner=obj.practitioner).first()
        if saved is not None:
            obj.pk = saved.pk
            obj.created_at = saved.created_at

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
