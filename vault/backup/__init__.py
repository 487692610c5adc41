"""Backups that really restore: a consistent, encrypted logical export of the database
and the blob store, with keys kept apart (see docs/operations.md)."""
