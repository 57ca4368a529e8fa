"""The errors a user may see: each says what went wrong and what to do about it."""

from __future__ import annotations


class MnistbenchError(Exception):
    """Base of every error the CLI turns into one readable line.

    `exit_code` 2 means bad input (a flag, a file, a dataset); 1 means the environment failed us.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}. Hint: {self.hint}"
        return " ".join(text.split())


class BadInput(MnistbenchError):
    """Something the user gave us is wrong: a flag value, a config file, a name."""

    exit_code = 2


class DataError(BadInput):
    """A dataset file is missing, corrupt, or fails its checksum."""


class DatasetNotFound(DataError):
    """No source could provide the dataset."""


class ConfigError(BadInput):
    """An experiment file or a trial specification is invalid."""


class UnknownName(ConfigError):
    """A name that is not in its registry."""

    def __init__(self, kind: str, name: str, known: list[str]):
        super().__init__(
            f"unknown {kind} '{name}'",
            f"choose one of: {', '.join(sorted(known))} (see `mnistbench list`)",
        )


class StoreError(MnistbenchError):
    """The results store cannot be read or written (read-only folder, full disk, damaged file)."""


class StoreTooNew(StoreError):
    """A store written by a newer mnistbench: the folder given is the wrong input for this version."""

    exit_code = 2


class ResultsMissing(BadInput):
    """A command asked for results that are not in the store."""
