"""The one error type a user can cause, and how it reaches the terminal.

A UserError carries one line: what went wrong, where, and how to fix it. The
command-line layer prints it and exits non-zero; nothing else is printed, never
a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """An error the user can fix; its message is one line."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(" ".join(message.split("\n")))
        self.exit_code = exit_code


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
