"""One registry per extension point, keyed by the exact ``type:`` string of the YAML.

A registry binds each name to its implementation and, where the YAML configures it, to
its config class, so the two cannot drift apart: registering a config class whose
``type`` says another name is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from modelmill.errors import ConfigError, unknown_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to an implementation (and its config class). Registering a name twice is
    an error; an unknown name lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._configs: dict[str, type[Any]] = {}

    def register(self, name: str, *, config: type[Any] | None = None) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            self.add(name, entry, config=config)
            return entry

        return decorate

    def add(self, name: str, entry: T, *, config: type[Any] | None = None) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if config is not None:
            tag = _type_tag(config)
            if tag != name:
                raise ValueError(f"{self.kind} {name!r} is bound to {config.__name__}, whose type is {tag!r}")
            self._configs[name] = config
        self._entries[name] = entry

    def get(self, name: str, *, path: str = "") -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_choice(self.kind, name, self._entries), path=path) from None

    def config_class(self, name: str) -> type[Any]:
        """The config class bound to ``name``."""
        self.get(name)
        try:
            return self._configs[name]
        except KeyError:
            raise ValueError(f"{self.kind} {name!r} has no config class bound to it") from None

    def configs(self) -> dict[str, type[Any]]:
        """Every bound config class by name."""
        return dict(self._configs)

    @contextmanager
    def swapped(self, name: str, entry: T) -> Iterator[None]:
        """Within the block ``name`` gives ``entry`` (a wrapper, or a test double of a real
        implementation); its config binding stays. The registered entry comes back after."""
        before = self.get(name)
        self._entries[name] = entry
        try:
            yield
        finally:
            self._entries[name] = before

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


def _type_tag(config: type[Any]) -> object:
    """The default of a config class's ``type`` field (pydantic), else its ``type`` attribute."""
    fields = getattr(config, "model_fields", None)
    if isinstance(fields, dict) and "type" in fields:
        return getattr(fields["type"], "default", None)
    return getattr(config, "type", None)
