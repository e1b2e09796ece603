"""The driver's events: what the Buildbot steps (and any other tool) read instead of its text.

People read the progress lines and the verdict on standard output. Programs set the
environment variable ``OSCARVT_EVENTS`` to a file name; each ``oscarvt`` command then
writes that file anew (its folder is created), one JSON object per line, each with
``event`` (its kind) and ``time`` (UNIX seconds):

==============  ===========================================================================
``event``       fields
==============  ===========================================================================
``progress``    ``text``: the progress line people see
``phase``       ``phase``, ``result`` (``running`` at its start, ``passed`` or ``failed``); at
                its end also ``seconds`` and ``product_seconds`` (of those, the time spent
                waiting on OSCAR and its nodes; the rest is the harness's, see ``oscarvt.timing``)
``accel``       ``name`` (``kvm``/``tcg``), ``reason`` (why; after a look at /dev/kvm also when
                and by which run), ``decided_at`` (when, UNIX seconds), ``decided_by`` (``this
                run``, or ``an earlier run``: a KVM probe's outcome kept for this host boot),
                ``waited`` (seconds this run waited for another run's KVM probe, else 0)
``node``        ``vm`` (the VM's name: the key to follow a node by), ``client`` (OSCAR's name
                for the node, from its define-clients answers as the node's reports say it;
                null until the node reported), ``state`` (``imaging``, ``installed``,
                ``booted``, ``restarted``, ...), ``status`` (SystemImager's status code, or null)
``cluster``     made by copy-vm-image: ``template`` (the headnode's template: the recipe key of one
                ``oscarvt image build`` made, else its disk's or kernel's file name), ``oscarvt``
                (the driver's version)
``oscar_step``  ``step``: the OSCAR step install_cluster is in (``Step 4 - Build ...``)
``test``        ``class``, ``name``, ``result`` (``passed``/``failed``/``skipped``), ``message``,
                ``seconds`` (the JUnit report's ``time`` as text, empty if none)
``verdict``     ``verb``, ``ok``, ``blame`` (null, ``product``, ``bad input``,
                ``infrastructure``; see ``oscarvt.errors``), ``message``, ``vm`` (the VM the
                failure names, or null), ``logs`` (where to read more, e.g. ``see its output, ...
                on the headnode, or grab-logs``, or null; the printed line ends with it in
                parentheses, the message does not hold it)
==============  ===========================================================================

A command always ends with exactly one ``verdict``; one that wrote none was killed. Credentials in
URLs are masked in every event (``oscarvt.masking``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

from oscarvt.masking import mask_credentials

ENV = "OSCARVT_EVENTS"
KINDS = ("progress", "phase", "accel", "cluster", "node", "oscar_step", "test", "verdict")

_sink: IO[str] | None = None
_opened = False


def emit(kind: str, **fields: Any) -> None:
    """Write one event (no-op unless ``OSCARVT_EVENTS`` names a file; never fails the command)."""
    assert kind in KINDS, kind
    sink = _file()
    if sink is None:
        return
    try:
        line = json.dumps({"event": kind, "time": round(time.time(), 3), **fields})
        sink.write(mask_credentials(line) + "\n")
        sink.flush()
    except (OSError, ValueError):  # a full disk must not turn the verdict into a traceback
        pass


def parse(line: str) -> dict[str, Any] | None:
    """One event from a line of an events file; None for anything else (a cut line, noise)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") not in KINDS:
        return None
    return event


def _file() -> IO[str] | None:
    global _sink, _opened
    if not _opened:
        _opened = True
        name = os.environ.get(ENV)
        if name:
            try:
                Path(name).parent.mkdir(parents=True, exist_ok=True)
                _sink = open(name, "w", encoding="utf-8")  # noqa: SIM115 (open for the command's life)
            except OSError:
                _sink = None
    return _sink
