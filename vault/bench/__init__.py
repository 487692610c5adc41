"""``vault bench``: measured speed against a real PostgreSQL (docs/performance.md).

A run fills the store to a size with real encrypted rows (store.py), starts a real server
(server.py), drives it over HTTP as clients would (ingest.py, reads.py), measures the raw
PostgreSQL floor beside it, and times what operators run: audit verification and key
rotation (operations.py). runner.py puts it together and prints the results.
"""
