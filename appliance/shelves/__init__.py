"""Shelves: load-cell ingest, step detection, product inference and inventory."""
