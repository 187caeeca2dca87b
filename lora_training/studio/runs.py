"""The runs page."""

ROUTES: list = []
