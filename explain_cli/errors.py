"""The one exception type the tool raises for problems the user can fix."""

from __future__ import annotations


class ExplainError(Exception):
    """Bad usage or bad input: shown as one line on stderr, exit code 2.

    The message names the problem and, where there is one, the fix.
    """

    exit_code = 2
