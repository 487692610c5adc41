"""Taking everything away: a patient's whole record as one archive (docs/lifecycle.md)."""
