"""Put a Django site's signups into a Constant Contact list, unattended and without losing one."""

__version__ = "0.1.0"
