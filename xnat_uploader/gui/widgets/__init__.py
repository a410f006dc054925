"""Views: widgets without I/O."""
