"""One exception type for user mistakes: the CLI prints its message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input from the user (missing file, malformed JSON, out-of-range value...).

    The message must name the file or value at fault; the CLI prints it without a traceback.
    """
