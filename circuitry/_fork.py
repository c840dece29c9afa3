"""One registry of what must be made whole again in a forked child: breakers and stores.

Before a fork each registered object's `_before_fork` takes its lock, so that
no other thread is half-way through an operation in the copy the child gets
(locks are only ever held around short steps, never around user code, so
this waits a moment at most). After the fork the parent releases them
(`_after_fork_in_parent`) and the child makes itself new ones
(`_after_fork_in_child`, given the forking thread, the only one the child has).

Objects are kept as plain weak references (no callback, so the one CPython
keeps for the object is reused), with the dead ones pruned whenever the list
has doubled: a WeakSet costs more memory per breaker (benchmarks/README.md,
"Measured choices").
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["Forkable", "register"]


class Forkable(Protocol):
    def _before_fork(self) -> None: ...

    def _after_fork_in_parent(self) -> None: ...

    def _after_fork_in_child(self, forking_thread: int) -> None: ...


_REGISTERED: list[weakref.ref[Forkable]] = []
_REGISTRY_LOCK = threading.Lock()
_prune_at = 1024
_FORKING: list[Forkable] = []  # the objects whose locks the fork holds, in registration order


def register(forkable: Forkable) -> None:
    """Make `forkable` whole in forked children (for as long as it lives)."""
    global _prune_at
    with _REGISTRY_LOCK:
        _REGISTERED.append(weakref.ref(forkable))
        if len(_REGISTERED) >= _prune_at:
            _REGISTERED[:] = [ref for ref in _REGISTERED if ref() is not None]
            _prune_at = max(1024, 2 * len(_REGISTERED))


def _before_fork() -> None:
    # The registry's lock too, held across the fork: a thread creating a
    # breaker at that moment must not leave it locked in the child.
    _REGISTRY_LOCK.acquire()
    _FORKING[:] = [f for f in (ref() for ref in _REGISTERED) if f is not None]
    for forkable in _FORKING:
        forkable._before_fork()


def _after_fork_in_parent() -> None:
    for forkable in _FORKING:
        forkable._after_fork_in_parent()
    _FORKING.clear()
    _REGISTRY_LOCK.release()


def _after_fork_in_child() -> None:
    forking_thread = threading.get_ident()
    for forkable in _FORKING:
        forkable._after_fork_in_child(forking_thread)
    _FORKING.clear()
    _REGISTRY_LOCK.release()  # taken by this thread, which the child has


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
