"""Errors that lamina reports to the user as one line, before any compile."""


class ConfigError(ValueError):
  """A config value, name or workdir that cannot work; the message says the fix."""


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss; the message names the step."""


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved and the same command resumes."""

  exit_code = 75  # EX_TEMPFAIL: "try again", which is what a rerun does.


class CheckpointError(RuntimeError):
  """No checkpoint in the workdir reads back intact; the message says which and what to do."""
