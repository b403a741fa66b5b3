"""The ``emotk`` command line: thin Typer apps over the core. No heavy imports at module level."""
