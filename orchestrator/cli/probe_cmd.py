"""`callfleet probe`."""


def probe() -> None:
    """Synthetic emergency calls through a site."""
