from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView, TemplateView

from cc_sync.views import SignupView

urlpatterns = [
    path("", RedirectView.as_view(url="/register/", permanent=False)),
    path(
        "register/",
        SignupView.as_view(template_name="register.html", success_url="/register/done/"),
        name="register",
    ),
    path("register/done/", TemplateView.as_view(template_name="register_done.html"), name="register_done"),
    path("admin/", admin.site.urls),
]
