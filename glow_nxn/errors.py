"""The errors a run ends with on purpose: one line on stderr and an exit code of their own.

=========================  =========  ====================================================
error                      exit code  meaning
=========================  =========  ====================================================
:class:`UserError`         2          bad input (a flag, a path, a dataset, a checkpoint)
:class:`TrainingDiverged`  3          training diverged past its recoveries, or a trained
                                      model's numbers are not finite
:class:`Hung`              70         no training step completed for --step_timeout_seconds,
                                      or the first for --first_step_timeout_seconds (a
                                      process hangs); the same command resumes from the
                                      newest checkpoint (``EX_SOFTWARE``)
:class:`WriteFailed`       74         a file of the run could not be written (a full disk,
                                      no permission); what was written before is intact
                                      (74 is sysexits.h's ``EX_IOERR``)
:class:`Preempted`         75         stopped by SIGTERM or SIGINT after a checkpoint; the
                                      same command resumes (``EX_TEMPFAIL``: try again)
=========================  =========  ====================================================

``flags.run`` prints ``<script>: <label>: <message>`` (the label is ``error``, or ``stopped``
for :class:`Preempted`) and exits with the code; anything else is a bug and keeps its traceback.
Under horovodrun the job's own exit code is 1 whatever its processes' codes; it prints the first
failing process's code (``Exit code: 75``).
"""
import contextlib
import re


class GlowError(Exception):
    """An expected way for a run to fail; its message names the problem and the fix."""

    exit_code = 1
    label = "error"


class UserError(GlowError):
    """Bad input (a flag, a path, a dataset, a checkpoint)."""

    exit_code = 2


class TrainingDiverged(GlowError):
    """Training diverged beyond recovery, or a model produced non-finite numbers."""

    exit_code = 3


class Hung(GlowError):
    """No training step completed in the time allowed: some process of the job hangs."""

    exit_code = 70


class WriteFailed(GlowError):
    """A file of the run could not be written; the message names it and what is still intact."""

    exit_code = 74


class Preempted(GlowError):
    """Training stopped on a signal, after a checkpoint: not a failure, a pause."""

    exit_code = 75
    label = "stopped"


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


def first_line(error):
    """The first line of an exception's message, without TensorFlow's decorations (the
    ``{{function_node ...}}`` prefix and ``[Op:...]`` suffix of an op's error), for one-line
    reports of what went wrong underneath."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{.*?\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:.*", "", text, flags=re.DOTALL).strip()
    return text.splitlines()[0] if text else type(error).__name__
