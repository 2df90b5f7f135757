"""Logging filters of the example project."""

from __future__ import annotations

import logging
import re

# code=... and state=... in a logged URL: the OAuth callback's one-time code and its state.
OAUTH_QUERY = re.compile(r"([?&](?:code|state|device_code)=)[^&\s\"']+")


def mask(text: str) -> str:
    return OAUTH_QUERY.sub(r"\1********", text)


class HideOAuthQuery(logging.Filter):
    """Masks the values of ``code=`` and ``state=`` in request lines (runserver's ``django.server`` log).

    The admin's OAuth callback receives CC's authorization code in its query string; runserver logs every
    request line, so the code would sit in the terminal and in any log file kept of it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True
