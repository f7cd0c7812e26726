from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from emailsettings.views.metrics import metrics
from psicogest import probes, views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="invoices", permanent=False)),
    path("accesso/", auth_views.LoginView.as_view(), name="login"),
    path("esci/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("fatture/", views.invoice_list, name="invoices"),
    path("fatture/<int:pk>/", views.invoice_detail, name="invoice"),
    # The only way to an invoice PDF, in every environment: MEDIA_ROOT is never served as is
    # (its files are patient data; this view is scoped to the logged-in practitioner).
    path("fatture/<int:pk>/pagata/", views.invoice_paid, name="invoice_paid"),
    path("fatture/<int:pk>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("pazienti/<int:pk>/modifica/", views.patient_edit, name="patient_edit"),
    path("email/", include("emailsettings.urls")),
    # ESP tracking webhooks (delivered, bounced, complained), authenticated by anymail with
    # ANYMAIL_WEBHOOK_SECRET (HTTP basic auth).
    path("anymail/", include("anymail.urls")),
    path("admin/", admin.site.urls),
    # The operator's probes and metrics (docs/operations.md).
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]
