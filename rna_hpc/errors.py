"""User-facing errors: each prints as one clean message (exit code 2), never as a traceback."""

from __future__ import annotations


class RnaHpcError(Exception):
    """Base class of the errors the command-line entry points print as a message and exit 2."""

    exit_code = 2


class ConfigError(RnaHpcError):
    """An inconsistent or invalid configuration; the message lists every ``key: why``."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        n = len(self.problems)
        head = "invalid configuration" + (f" ({n} problems)" if n > 1 else "")
        super().__init__(head + ":\n  " + "\n  ".join(self.problems))

    def __reduce__(self) -> tuple:
        return (type(self), (self.problems,))  # pickles across processes (submitit results) unchanged


class InputError(RnaHpcError):
    """Bad input data: the message names the file and the line, residue or target."""


class CheckpointError(RnaHpcError):
    """A checkpoint that cannot be used: missing, corrupt, unsafe, or of another shape."""


class TrainingFailed(RnaHpcError):
    """A run finished but must be reported as failed (non-finite loss, below the baseline)."""

    exit_code = 1


class RequeueLimitReached(RnaHpcError):
    """A Slurm job restarted more often than its launcher allows; it stops instead of resuming again."""

    exit_code = 1
