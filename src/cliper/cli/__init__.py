"""Command-line interface (Typer). Each pipeline stage registers its commands in its own module."""
