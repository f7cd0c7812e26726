from django.contrib import admin

from emailsettings.models import (
    Delivery,
    DeliveryEvent,
    EmailSettings,
    ReminderLevel,
    ReminderRules,
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
