"""One registry per extension point, keyed by the exact ``type:`` string of the YAML."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from modelmill.errors import ConfigError, unknown_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to an implementation. Registering a name twice is an error;
    an unknown name lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorate

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str, *, path: str = "") -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_choice(self.kind, name, self._entries), path=path) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
