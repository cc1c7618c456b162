"""The one exception type a user can cause.

Anything a user can get wrong (a bad file, a bad config key, a missing model, a full disk)
is raised as :class:`UserError` with one sentence that names the thing and the fix. The CLI
prints that sentence and exits with status 2; it never shows a traceback for these.
"""


class UserError(Exception):
    """A mistake in the user's input, stated as one sentence naming the thing and the fix."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is left intact."""
