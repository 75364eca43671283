"""Vision encoders: GMML (masked image modelling by reconstruction of corrupted regions)."""
