"""What operators see: metrics, logs, readiness and progress -- never patients' data."""
