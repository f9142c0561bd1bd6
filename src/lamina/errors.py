"""The user-facing error family: the CLI turns these into one line and exit code 2."""


class LaminaError(ValueError):
    """Bad input from the user (design, data, files); the message names what is wrong."""


class DesignError(LaminaError):
    """A design that cannot be built; the message names the offending field."""
