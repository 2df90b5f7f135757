from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CCSyncConfig(AppConfig):
    name = "cc_sync"
    verbose_name = _("Constant Contact sync")
    # Pinned so that Django 6.0's BigAutoField default does not show up as a phantom migration.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, sync  # noqa: F401  (registers the system checks and signal receivers)
