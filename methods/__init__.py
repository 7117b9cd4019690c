"""How a model is compressed: one file per method family, registered with `METHODS.register()`."""
