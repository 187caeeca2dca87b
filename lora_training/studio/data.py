"""The data page."""

ROUTES: list = []
