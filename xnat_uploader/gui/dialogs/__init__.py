"""Dialogs: crash report (more to come)."""
