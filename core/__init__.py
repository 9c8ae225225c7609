"""Trading core: the deterministic matching and risk engine and the service around it."""
