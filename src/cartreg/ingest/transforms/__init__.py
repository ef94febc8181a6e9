"""Vectorized transforms from source text to typed CDM values (polars expressions only)."""
