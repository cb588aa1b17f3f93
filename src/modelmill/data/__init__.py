"""Data: sources, schema inference and validation, cleaning, splitting, public data sets."""
