"""URLs of the visitor-latency benchmark: cc_sync's signup view as the example project mounts it, and the baselines."""

from django.urls import path

from cc_sync.views import SignupView

from .views import THANKS_URL, PlainSignupView, SynchronousSignupView, thanks

urlpatterns = [
    path("register/", SignupView.as_view(success_url=THANKS_URL), name="register"),
    path("register/done/", thanks, name="register_done"),
    path("bench/plain/", PlainSignupView.as_view(), name="bench_plain"),
    path("bench/synchronous/", SynchronousSignupView.as_view(), name="bench_synchronous"),
]
