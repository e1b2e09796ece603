"""Where a run's time goes: to the system under test, or to oscarvt itself (the harness).

The product's time is what the driver spends waiting on OSCAR and its nodes: OSCAR's steps
up to its boot hook and after it (start-oscar, finish-oscar), and the nodes' installers from
the moment they start to the moment they have booted from their disks (wait-for-nodes).
Everything else is the harness's: making disks, booting or restoring the headnode, copying
the tree in, starting VMs, restarting a rebooted node, grabbing logs, destroying. Code that
waits on the product runs inside ``spent_on_product()``; harness work inside it (restarting a
node) runs inside ``spent_on_harness()``. Each phase record keeps its ``product_seconds``
(``ClusterDir.phase``), and ``share`` sums a run's phases up.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

_owners: list[bool] = []  # innermost last: True while the time is the product's
_product = 0.0
_since = time.monotonic()


def product_seconds() -> float:
    """Seconds this process has spent on the product so far."""
    _account()
    return _product


@contextmanager
def spent_on_product() -> Iterator[None]:
    """Count the time inside as the product's (waiting on OSCAR or on the nodes' installers)."""
    with _owner(True):
        yield


@contextmanager
def spent_on_harness() -> Iterator[None]:
    """Count the time inside as the harness's, also inside ``spent_on_product``."""
    with _owner(False):
        yield


def share(phases: Iterable[Any], wall: float | None = None) -> dict[str, float]:
    """The product's and the harness's seconds over ``phases`` (records with ``seconds`` and ``product_seconds``)
    and the harness's share; ``wall``: the whole run's seconds, whose gaps between phases are the harness's."""
    phases = list(phases)
    total = sum(float(p.seconds or 0) for p in phases)
    product = sum(float(p.product_seconds or 0) for p in phases)
    whole = max(total, wall or 0.0)
    harness = whole - product
    return {"seconds": round(whole, 1), "product_seconds": round(product, 1), "harness_seconds": round(harness, 1),
            "harness_share": round(harness / whole, 3) if whole else 0.0}


def describe(figures: dict[str, float]) -> str:
    """``share``'s figures in words: "harness 9s of 81s (11%)"."""
    return (f"harness {figures['harness_seconds']:.0f}s of {figures['seconds']:.0f}s "
            f"({100 * figures['harness_share']:.0f}%)")


@contextmanager
def _owner(product: bool) -> Iterator[None]:
    _account()
    _owners.append(product)
    try:
        yield
    finally:
        _account()
        _owners.pop()


def _account() -> None:
    """Give the time since the last change of owner to the owner then."""
    global _product, _since
    now = time.monotonic()
    if _owners and _owners[-1]:
        _product += now - _since
    _since = now
