"""Small shared helpers: dataclass configs <-> plain dicts (what checkpoints and JSON hold), and
the context-manager protocol of every model wrapper that owns native resources."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Self, TypeVar

T = TypeVar("T")


def from_plain_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from a plain dict; unknown keys are an error (a file from another version)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
    return cls(**data)


class ClosesOnExit:
    """``with Model() as m:`` calls ``m.close()`` on the way out (subclasses define close)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
