"""The record page."""

ROUTES: list = []
