"""The errors a run ends with on purpose: one line on stderr and an exit code of their own.

=========================  =========  ====================================================
error                      exit code  meaning
=========================  =========  ====================================================
:class:`UserError`         2          bad input (a flag, a path, a dataset, a checkpoint)
:class:`TrainingDiverged`  3          training diverged past its recoveries, or a trained
                                      model's numbers are not finite
=========================  =========  ====================================================

``flags.run`` prints ``<script>: error: <message>`` and exits with the code; anything else is a
bug and keeps its traceback.
"""
import contextlib


class GlowError(Exception):
    """An expected way for a run to fail; its message names the problem and the fix."""

    exit_code = 1


class UserError(GlowError):
    """Bad input (a flag, a path, a dataset, a checkpoint)."""

    exit_code = 2


class TrainingDiverged(GlowError):
    """Training diverged beyond recovery, or a model produced non-finite numbers."""

    exit_code = 3


@contextlib.contextmanager
def as_user_error():
    """Re-raise a ValueError (the library's answer to a bad argument) as a :class:`UserError`.

    Only around the calls whose arguments come from the user (flags, dataset names, paths), so
    that a bug's ValueError elsewhere keeps its traceback.
    """
    try:
        yield
    except ValueError as error:
        raise UserError(str(error)) from error
