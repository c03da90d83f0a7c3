"""Errors about the user's input (files, fields, settings): the CLI prints them as one line."""


class InputError(ValueError):
    """Bad input: the message names the file/field/key and what is expected."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the settings point to is not there."""
