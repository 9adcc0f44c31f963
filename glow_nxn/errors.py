"""The error a user's mistake raises: entry scripts print its message on one line and exit 2."""
import contextlib


class UserError(Exception):
    """Bad input (a flag, a path, a dataset, a checkpoint); the message names the problem and
    the fix."""


@contextlib.contextmanager
def as_user_error():
    """Re-raise a ValueError (the library's answer to a bad argument) as a :class:`UserError`.

    For the places where arguments come from the user: flags, dataset names and paths.
    """
    try:
        yield
    except ValueError as error:
        raise UserError(str(error)) from error
