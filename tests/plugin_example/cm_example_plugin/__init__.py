"""Example CompressMark plugin."""

from pathlib import Path


def suite_path() -> Path:
    """The `harness.suites` entry point: where this plugin's suite file is."""
    return Path(__file__).with_name("example-random.toml")
