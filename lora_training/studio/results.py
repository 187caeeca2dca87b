"""The results page."""

ROUTES: list = []
