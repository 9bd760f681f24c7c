"""The ``explain`` command line: a thin Typer skin over the library (:mod:`explain_cli.api`).

:mod:`~explain_cli.cli.app` declares the commands, :mod:`~explain_cli.cli.flags` derives their
options from the schema and shows the library's option names as flags, and
:mod:`~explain_cli.cli.terminal` writes one-line errors, warnings and the progress bar. Nothing
outside this package imports Typer or rich.
"""
