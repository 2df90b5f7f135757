"""Signals a site can connect to."""

from django.dispatch import Signal

#: A connection was made (or re-made) through any connect flow. Sent with ``connection``.
connection_established = Signal()
#: CC refused the stored grant; an admin must reconnect. Sent once per loss, with ``connection`` and ``reason``.
connection_needs_reconnect = Signal()
#: A signup reached CC. Sent with ``signup``.
signup_synced = Signal()
#: A signup was given up on (CC rejected it, or the deadline passed). Sent with ``signup`` and ``reason``.
signup_failed = Signal()
