"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug).

Messages follow one shape: `<where>: <what>, expected X, got Y`, where `<where>` is
`file:line`, a path, a field name or `utterance <id>`.
"""


class LoraTrainingError(Exception):
    """Base of every error caused by input, configuration or environment rather than a bug."""


class ConfigError(LoraTrainingError):
    """A configuration value is invalid; the message names the field, the value and the fix.

    `problems` holds each `field: expected X, got Y` on its own, so a form can show each beside its field."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class ManifestError(LoraTrainingError):
    """One or more manifest lines are invalid; all problems are gathered before raising."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"{len(self.problems)} manifest problem(s):"
        super().__init__("\n  ".join([head, *self.problems]) if len(self.problems) > 1 else self.problems[0])


class AudioError(LoraTrainingError):
    """An audio file is missing, unreadable, empty, too short or too long; names the path."""


class TrainingDiverged(LoraTrainingError):
    """The loss became NaN or infinite; the message names the step and the learning rate."""


class ModelError(LoraTrainingError):
    """A model reference cannot be resolved or an adapter does not fit its base model."""
