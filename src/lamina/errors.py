"""The user-facing error family: the CLI turns these into one line and exit code 2."""


class LaminaError(ValueError):
    """Bad input from the user (design, data, files); the message names what is wrong."""


class DesignError(LaminaError):
    """A design that cannot be built; the message names the offending field."""


class TaskError(LaminaError):
    """A data or task problem the user must fix; the message is one line naming file/line/column.

    A LaminaError (hence a ValueError), so the CLI reports it as one line like every user error.
    """

    @classmethod
    def at(cls, path, message: str, line: int | None = None, column: str | int | None = None) -> "TaskError":
        """Build ``path:line: column 'x': message`` so editors and humans can jump to the spot."""
        where = str(path)
        if line is not None:
            where += f":{line}"
        if column is not None:
            col = f"column {column!r}" if isinstance(column, str) else f"column {column}"
            return cls(f"{where}: {col}: {message}")
        return cls(f"{where}: {message}")
