"""Live metrics of the estate behind a provider interface (Prometheus ships)."""
