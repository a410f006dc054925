"""Persistent upload queue (SQLite) and its runner."""
