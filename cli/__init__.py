"""The ``handprep`` command line (a thin Typer layer over the ``handprep`` library)."""
