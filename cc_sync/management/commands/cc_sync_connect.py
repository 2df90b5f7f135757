"""Connect Constant Contact from a terminal: paste the redirected URL back, or use CC's device flow."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from cc_sync import oauth
from cc_sync.conf import app_settings
from cc_sync.exceptions import AuthorizationFailed
from cc_sync.management.commands._base import CCSyncCommand


class Command(CCSyncCommand):
    help = (
        "Connect Constant Contact without the admin: open the printed URL in any browser, approve, and paste "
        "the URL you are sent to (or just its code). With --device, use CC's device flow instead."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--device", action="store_true", help="Use the device flow (an application set up for it)."
        )
        parser.add_argument(
            "--redirect-uri",
            default="",
            help="Redirect URI registered on the CC application (default: CC_SYNC['REDIRECT_URI']).",
        )

    def handle(self, *args: Any, device: bool = False, redirect_uri: str = "", **options: Any) -> None:
        try:
            connection = self._device() if device else self._paste(redirect_uri or app_settings.REDIRECT_URI)
        except AuthorizationFailed as err:
            raise CommandError(str(err)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Connected to Constant Contact account {connection.account_name or connection.account_id or '?'}."
            )
        )

    def _paste(self, redirect_uri: str) -> Any:
        if not redirect_uri:
            raise CommandError(
                "Give --redirect-uri (or set CC_SYNC['REDIRECT_URI']): it must match the CC application."
            )
        url, record = oauth.authorization_request(redirect_uri)
        self.stdout.write("1. Open this URL in a browser and approve access:\n\n" + url + "\n")
        self.stdout.write("2. Paste the full URL your browser was sent to (or only its code=... value):")
        pasted = input("> ")
        return oauth.connect_with_code(
            oauth.code_from_pasted(pasted, record), redirect_uri, record.get("code_verifier")
        )

    def _device(self) -> Any:
        device = oauth.start_device_flow()
        link = device.get("verification_uri_complete") or device.get("verification_uri")
        self.stdout.write(f"Open {link} in any browser and approve access.")
        self.stdout.write(f"Code to confirm: {device.get('user_code')}")
        self.stdout.write(f"Waiting (checking every {device.get('interval', 5)} s)...")
        return oauth.finish_device_flow(device)
