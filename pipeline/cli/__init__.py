"""Stage 8, the command line: one module per group of commands, `main` the click group that holds them all."""

from pipeline.cli.main import main

__all__ = ["main"]
