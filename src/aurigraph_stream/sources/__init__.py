"""Where events come from: the simulated network, the metrics sampler, ingest."""
