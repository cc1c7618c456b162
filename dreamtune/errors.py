"""The one exception type a user can cause.

Anything a user can get wrong (a bad file, a bad config key, a missing model, a full disk)
is raised as :class:`UserError` with one sentence that names the thing and the fix. The CLI
prints that sentence and exits with status 2; it never shows a traceback for these.
"""


class UserError(Exception):
    """A mistake in the user's input, stated as one sentence naming the thing and the fix."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is left intact."""


def os_error_sentence(exc: OSError) -> str | None:
    """One sentence for a file-system refusal nothing nearer caught (a folder the user may not read
    or write, a full disk, a file-size limit); None for other errors, which stay bugs to report."""
    import errno

    where = exc.filename or "a file"
    sentences = {
        errno.EACCES: f"{where} cannot be opened (permission denied); run dreamtune as a user who may read and write it, "
        "or choose another folder.",
        errno.EROFS: f"{where} is on a read-only file system; choose a folder you can write to.",
        errno.ENOSPC: f"the disk holding {where} is full; free some space or choose another folder.",
        errno.EDQUOT: f"the disk quota for {where} is used up; free some space or choose another folder.",
        errno.EFBIG: f"writing {where} hit the file-size limit (ulimit -f); raise the limit or choose another folder.",
    }
    sentences[errno.EPERM] = sentences[errno.EACCES]
    return sentences.get(exc.errno)
