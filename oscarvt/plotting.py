"""Pictures for people: matplotlib figures drawn off screen (Agg) and written as PNG files.

No pyplot, which keeps global state and looks for a display: each picture is its own Figure on
an Agg canvas, so pictures can be drawn in threads (the master draws its trends in one). Text
that came from elsewhere is drawn as it is (``parse_math=False``: a ``$`` is a dollar sign).
matplotlib is imported only when a picture is drawn, so the driver works without it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
MAX_PIXELS = 4000  # a picture's width and height at most
# One colour per phase, the same in every picture; red is left for failures.
PHASE_COLOURS = {"claim": "#aec7e8", "copy-vm-image": "#8c564b", "boot-headnode": "#1f77b4",
                 "checkout-oscar": "#17becf", "start-oscar": "#ff7f0e", "boot-compute-nodes": "#9467bd",
                 "wait-for-nodes": "#2ca02c", "finish-oscar": "#e377c2", "grab-logs": "#7f7f7f",
                 "send-logs": "#bcbd22", "keep": "#c49c94", "destroy": "#393b79"}
OTHER_PHASE = "#c7c7c7"


def figure(width: int, height: int) -> Figure:
    """A new figure of ``width`` x ``height`` pixels (each at most ``MAX_PIXELS``) on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, MAX_PIXELS) / DPI, min(height, MAX_PIXELS) / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def write_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG, whole or not at all (a new file renamed; the umask sets its mode)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(handle, "wb") as out:
            fig.savefig(out, format="png", dpi=DPI)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def phase_colour(phase: str) -> str:
    """The colour of ``phase`` in every picture."""
    return PHASE_COLOURS.get(phase, OTHER_PHASE)

