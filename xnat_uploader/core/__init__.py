"""The application's engine: no Qt here (checked by import-linter)."""
