"""Every option of an explanation: declared once, parsed once, read typed.

:mod:`~explain_cli.options.schema` is the table (one :class:`~explain_cli.options.schema.Option`
per option, from which the CLI, YAML, ``explain()`` keywords, ``explain info`` and the README
derive); :mod:`~explain_cli.options.parse` holds the parse hooks of free-form values;
:mod:`~explain_cli.options.settings` resolves option layers into the typed, frozen groups of
:mod:`~explain_cli.options.groups`. ``python -m explain_cli.options`` prints the README's table.
"""
