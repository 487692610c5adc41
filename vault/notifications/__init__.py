"""Notifications that reach a person: e-mail preferences, the e-mail outbox and its worker."""
