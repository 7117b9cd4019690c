"""Where a model runs: one file per runtime. A target only loads and predicts; it never times."""
