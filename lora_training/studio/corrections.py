"""The corrections page."""

ROUTES: list = []
