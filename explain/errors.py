"""User-facing errors: one clear line naming the file or argument and the problem."""
from __future__ import annotations

import difflib
from typing import Iterable


class ExplainError(Exception):
    """An error caused by user input; the CLI prints it as one line, without a traceback.

    `param` names the argument at fault by the name the library gives it (`model`,
    `weights`, `method`, `methods`, `layer`, `target`, `data`, `edits`, `out`, ...), never
    by a command-line flag: the CLI maps it to the flag of the command that was run.
    `str(e)` is "param: message" (or the message alone when no argument is at fault).
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return f"{self.param}: {self.message}" if self.param else self.message

    def __reduce__(self):  # keep `param` across processes (DataLoader workers, torchrun)
        return type(self), (self.message, self.param)


class ImageError(ExplainError):
    """An image file that cannot be used (missing, corrupt, too large, ...)."""


class WeightsError(ExplainError):
    """A weights file that cannot be loaded into the requested architecture."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the choice closest to a mistyped `word` ("" when none is
    close): the end of a message about an unknown name."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
