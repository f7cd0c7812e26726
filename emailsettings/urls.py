from django.urls import path

from .views import reports, settings

app_name = "emailsettings"

urlpatterns = [
    path("impostazioni/", settings.settings_page, name="settings"),
    path("invii/", reports.delivery_list, name="deliveries"),
    path("invii/<int:pk>/", reports.delivery_detail, name="delivery"),
]
