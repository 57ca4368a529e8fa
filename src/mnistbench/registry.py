"""A tiny typed registry: name -> entry, with a description, used for every pluggable thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from .errors import UnknownName

T = TypeVar("T")


@dataclass
class Registry(Generic[T]):
    """Maps names to entries; `get` raises a helpful UnknownName instead of KeyError."""

    kind: str
    entries: dict[str, T]

    def __init__(self, kind: str):
        self.kind = kind
        self.entries = {}

    def add(self, name: str, entry: T) -> T:
        if name in self.entries:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self.entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, list(self.entries)) from None

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self.entries.items())
