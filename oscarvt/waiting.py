"""Small wait helpers: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from oscarvt.errors import InfraError, OscarvtError

T = TypeVar("T")


def wait_for(
    attempt: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    give_up: Callable[[], str | None] | None = None,
    error: type[OscarvtError] = InfraError,
) -> T:
    """Call ``attempt`` until it returns something other than None, and return that.

    ``give_up`` is asked between tries; a message from it ends the wait at once
    (for example "the VM's QEMU process died"). Raises ``error`` (by default an
    InfraError: the harness's own wait) naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result is not None:
            return result
        if give_up is not None:
            reason = give_up()
            if reason:
                raise error(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
