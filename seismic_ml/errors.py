"""The one exception type the CLI turns into a one-line message."""


class SeismicMLError(Exception):
    """A problem a person can fix: bad input, missing data, an invalid combination."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class BadOptionValue(SeismicMLError):
    """A value a person gave on the command line is invalid: a usage error (exit 2)."""
