"""Suite files (`*.toml`) shipped as package data; `harness list suites` lists them."""
