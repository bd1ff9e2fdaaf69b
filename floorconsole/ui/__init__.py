"""Textual console: app, screens, widgets."""
