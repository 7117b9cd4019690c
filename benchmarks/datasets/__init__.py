"""Datasets, one file per format; each registers a DatasetSpec class with `DATASETS.register()`."""
