"""Operating the server: health, stats, Prometheus metrics, logs."""
