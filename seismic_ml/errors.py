"""The one exception type the CLI turns into a one-line message."""


class SeismicMLError(Exception):
    """A problem a person can fix: bad input, missing data, an invalid combination."""
