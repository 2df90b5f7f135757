from django.urls import path

from . import views

app_name = "cc_sync"

urlpatterns = [
    path("", views.SignupView.as_view(), name="signup"),
    path("thanks/", views.ThanksView.as_view(), name="thanks"),
    path("confirm/<str:token>/", views.ConfirmView.as_view(), name="confirm"),
]
