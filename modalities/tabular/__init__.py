"""Tabular encoders: tokens are a row's features, pooled is the row embedding."""
