"""Ready-made choosers of the connection a form's signups go to (``CC_SYNC["CONNECTION_CHOOSER"]``)."""

from __future__ import annotations

from django.contrib.sites.shortcuts import get_current_site
from django.http import HttpRequest

from .models import Connection


def connection_for_site(request: HttpRequest) -> Connection | None:
    """The connection whose ``site_domain`` is the current site's domain (lower case); ``None`` (the default)
    if none is.

    The current site is ``django.contrib.sites``' one when that app is installed (``SITE_ID`` or the
    request's host), else the request's host: multi-site installations work with or without it.
    """
    domain = get_current_site(request).domain.lower()
    # A RequestSite's domain is the Host header, port included: a site_domain may be written either way.
    names = {domain, domain.rsplit(":", 1)[0]} if domain.count(":") == 1 else {domain}
    return Connection.objects.filter(site_domain__in=names).order_by("pk").first()
