"""One exception tree; each class says what the caller should do.

- :class:`RetryLater` (and :class:`Throttled`, :class:`QuotaExceeded`, :class:`ActivityQueueFull`): transient,
  try again later.
- :class:`ReconnectRequired` (and :class:`cc_sync.crypto.UnreadableTokens`): CC refused the credentials, or
  the configured keys cannot decrypt them; an admin must connect again. Never retried in a loop.
- :class:`Rejected`: CC refused this request for good (400/404/415); retrying unchanged cannot help.
- :class:`AccessTokenRejected`: a 401 from the API; refresh once and retry once.
- :class:`AuthorizationFailed`: the connect flow was refused (bad state, access denied, code exchange error).
- :class:`CCSyncConfigurationError`: settings are wrong; deliberately outside the tree so no handler of
  :class:`CCSyncError` swallows it.

Messages never carry tokens, secrets or authorization codes.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class CCSyncError(Exception):
    """Base of every error cc_sync raises while talking to Constant Contact."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_key: str = "",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_key = error_key
        self.errors = errors or []

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        return " ".join(parts)


class RetryLater(CCSyncError):
    """A transient failure: timeout, connection error, 409, 5xx, 429 or a malformed success body."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Throttled(RetryLater):
    """429 ``throttled``: more than the per-second limit; wait at least a second."""


class QuotaExceeded(RetryLater):
    """429 ``quota_exceeded`` (or the local daily budget is spent): wait until after 00:00 UTC."""


class ActivityQueueFull(RetryLater):
    """429 on a bulk-activity POST (``/activities/...``): the account has more than 1,000 queued activities.

    CC's spec (``Activities429ErrorResponse``) gives this meaning to a 429 there, not per-second throttling:
    back off in minutes and keep polling the activities already queued. It never counts towards the daily
    quota's detection.
    """


class ReconnectRequired(CCSyncError):
    """The stored grant is unusable (``invalid_grant``, 403, 401 after a fresh refresh, or not connected)."""


class Rejected(CCSyncError):
    """CC refused the request itself (400, 404, 415 ...): a permanent failure for this signup."""


class AccessTokenRejected(CCSyncError):
    """401 from the API: the access token is no longer accepted."""


class AuthorizationFailed(CCSyncError):
    """The authorization (connect) flow failed; nothing was stored."""


class CCSyncConfigurationError(ImproperlyConfigured):
    """cc_sync's settings are missing or invalid."""
