from django.urls import path, re_path

from emailsettings.views import (
    covermail,
    mailbox,
    oauth,
    options,
    reading,
    reports,
    securelink,
    senderdomain,
    sending,
    settings,
    smtp,
)

app_name = "emailsettings"

urlpatterns = [
    path("impostazioni/", settings.settings_page, name="settings"),
    # The page's steps, each at its own URL (only their names: the forms post beside them).
    re_path(
        r"^impostazioni/(?P<step>{})/$".format("|".join(step.slug for step in settings.STEPS)),
        settings.settings_step,
        name="settings_step",
    ),
    path("impostazioni/smtp/", smtp.save_mailbox, name="smtp_save"),
    path("impostazioni/smtp/elimina/", smtp.delete_mailbox, name="smtp_delete"),
    path("impostazioni/smtp/verifica/", mailbox.verify, name="mailbox_verify"),
    path("impostazioni/smtp/prova/", mailbox.test_mail, name="mailbox_test"),
    path("impostazioni/smtp/stato/", mailbox.status, name="mailbox_status"),
    path("impostazioni/smtp/rileva/", smtp.autodetect, name="smtp_autodetect"),
    path("impostazioni/smtp/lettura/", reading.save_reading, name="reading_save"),
    path("impostazioni/smtp/accedi/<slug:provider_key>/", oauth.start, name="oauth_start"),
    path("impostazioni/smtp/accedi-ritorno/", oauth.callback, name="oauth_callback"),
    path("impostazioni/smtp/scollega/", oauth.disconnect, name="oauth_disconnect"),
    path("impostazioni/canale/", smtp.save_channel, name="channel_save"),
    path("impostazioni/opzioni/", options.save_options, name="options_save"),
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
    path("invii/<int:pk>/ricevute/<int:receipt_pk>/", reports.pec_receipt, name="pec_receipt"),
    path("invii/<int:pk>/annulla/", reports.delivery_cancel, name="delivery_cancel"),
    path(
        "invii/<int:pk>/correggi-indirizzo/",
        reports.delivery_fix_address,
        name="delivery_fix_address",
    ),
    path("invii/<int:pk>/invia-ora/", reports.delivery_send_now, name="delivery_send_now"),
    path("invii/<int:pk>/revoca-link/", securelink.revoke, name="secure_link_revoke"),
    # The patient's download page: no login, the token and a second factor.
    path("scarica/<str:token>/", securelink.download, name="secure_link"),
]
