"""Networks, one file per family; each registers `ModelSpec`s with `MODELS.register()`."""
