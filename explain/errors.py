"""User-facing errors: one clear line naming the file or argument and the problem."""


class ExplainError(Exception):
    """An error caused by user input; the CLI prints it as one line, without a traceback."""


class ImageError(ExplainError):
    """An image file that cannot be used (missing, corrupt, too large, ...)."""


class WeightsError(ExplainError):
    """A weights file that cannot be loaded into the requested architecture."""
