"""Subclasses made at run time, once per class, for swapping a breaker's class.

A breaker that needs other entry points (a chained one, one whose first sync
call warns) becomes an instance of a subclass of its own class with the
overrides in front, rather than checking a flag on every call. The subclass
keeps the class's name, module and docstring, so reprs, errors and docs read
as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Subclasses"]

T = TypeVar("T")


class Subclasses:
    """`subclasses(cls)`: `cls` with `front` before it and `attributes` set, made once per class.

    `finish(made, cls)` runs once on each new subclass before it is handed
    out (for what must be set after the class exists, where
    `__init_subclass__` cannot replace it).
    """

    def __init__(
        self,
        front: tuple[type, ...] = (),
        finish: Callable[[type, type], None] | None = None,
        **attributes: Any,
    ) -> None:
        self._front = front
        self._finish = finish
        self._attributes = attributes
        self._made: dict[type, type] = {}
        self._lock = threading.Lock()

    def __call__(self, cls: type[T]) -> type[T]:
        with self._lock:
            made = self._made.get(cls)
            if made is None:
                namespace = {
                    "__slots__": (),
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__doc__": cls.__doc__,
                    **self._attributes,
                }
                made = type(cls.__name__, (*self._front, cls), namespace)
                if self._finish is not None:
                    self._finish(made, cls)
                self._made[cls] = made
            return made
