"""Patients' records: identity by INS, demographics stored encrypted."""
