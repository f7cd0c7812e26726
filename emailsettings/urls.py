from django.urls import path

from . import views

app_name = "emailsettings"

urlpatterns = [
    path("impostazioni/", views.settings_page, name="settings"),
    path("invii/", views.delivery_list, name="deliveries"),
    path("invii/<int:pk>/", views.delivery_detail, name="delivery"),
]
