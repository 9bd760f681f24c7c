"""``python -m explain_cli.options``: print the README's option table."""

from explain_cli.options.schema import markdown_table

print(markdown_table())
