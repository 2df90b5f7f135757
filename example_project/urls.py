from django.contrib import admin
from django.urls import include, path
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
    # cc_sync's own pages: the confirmation link that unsubscribed contacts (or DOUBLE_OPT_IN) are emailed.
    path("signup/", include("cc_sync.urls")),
    path("admin/", admin.site.urls),
]
