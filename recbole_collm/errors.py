"""Errors about the user's input (files, fields, settings): the CLI prints them as one line."""


class InputError(ValueError):
    """Bad input: the message names the file/field/key and what is expected."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the settings point to is not there."""


def first_line(err: BaseException) -> str:
    """The first line of a library's error (or its type when it has no text): what an
    :class:`InputError` quotes as the reason, one line long."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
