"""Documents: ingestion (ITI-65, ITI-105, patient uploads), retrieval (ITI-67, ITI-68),
replacement, metadata updates and deletion."""
