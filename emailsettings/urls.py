from django.urls import path

from .views import covermail, mailbox, oauth, reports, senderdomain, sending, settings, smtp

app_name = "emailsettings"

urlpatterns = [
    path("impostazioni/", settings.settings_page, name="settings"),
    path("impostazioni/smtp/", smtp.save_mailbox, name="smtp_save"),
    path("impostazioni/smtp/elimina/", smtp.delete_mailbox, name="smtp_delete"),
    path("impostazioni/smtp/verifica/", mailbox.verify, name="mailbox_verify"),
    path("impostazioni/smtp/prova/", mailbox.test_mail, name="mailbox_test"),
    path("impostazioni/smtp/stato/", mailbox.status, name="mailbox_status"),
    path("impostazioni/smtp/rileva/", smtp.autodetect, name="smtp_autodetect"),
    path("impostazioni/smtp/accedi/<slug:provider_key>/", oauth.start, name="oauth_start"),
    path("impostazioni/smtp/accedi-ritorno/", oauth.callback, name="oauth_callback"),
    path("impostazioni/smtp/scollega/", oauth.disconnect, name="oauth_disconnect"),
    path("impostazioni/canale/", smtp.save_channel, name="channel_save"),
    path("impostazioni/dominio/verifica/", senderdomain.verify, name="sender_domain_verify"),
    path("impostazioni/mail/salva/", covermail.save, name="covermail_save"),
    path("impostazioni/mail/ripristina/", covermail.restore_default, name="covermail_restore"),
    path("impostazioni/mail/anteprima/", covermail.preview, name="covermail_preview"),
    path("invio/", sending.send_confirm, name="send_confirm"),
    path("invio/avanzamento/", sending.send_progress, name="send_progress"),
    path("invio/avanzamento/stato/", sending.send_progress_data, name="send_progress_data"),
    path("invii/", reports.delivery_list, name="deliveries"),
    path("invii/<int:pk>/", reports.delivery_detail, name="delivery"),
    path("invii/aggiornamenti/", reports.deliveries_refresh, name="deliveries_refresh"),
    path("invii/esporta.csv", reports.deliveries_export, name="deliveries_export"),
    path("invii/riprova/", reports.deliveries_bulk_retry, name="deliveries_bulk_retry"),
    path("invii/<int:pk>/reinvia/", reports.delivery_resend, name="delivery_resend"),
    path("invii/<int:pk>/riprova/", reports.delivery_retry, name="delivery_retry"),
    path("invii/<int:pk>/smart-mail/", reports.delivery_smart_mail, name="delivery_smart_mail"),
    path("invii/<int:pk>/riattiva/", reports.delivery_reactivate, name="delivery_reactivate"),
]
