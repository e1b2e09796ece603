"""The host's cache of built artefacts (test guests, templates), keyed by recipe hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    """``$OSCARVT_CACHE``, else ``$XDG_CACHE_HOME/oscarvt``, else ``~/.cache/oscarvt``."""
    if os.environ.get("OSCARVT_CACHE"):
        return Path(os.environ["OSCARVT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oscarvt"


def recipe_key(*parts: str) -> str:
    """A short, stable hash of everything that determines a build's result.

    Builders pass their own module's source among the parts, so any change to how
    something is built makes a new cache entry.
    """
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return digest[:16]


def cached_build(kind: str, key: str, build: Callable[[Path], None], force: bool = False) -> tuple[Path, bool]:
    """Return the cache folder ``kind/key`` and whether it was already there, building it if not.

    ``build(tmpdir)`` runs when the folder is absent or ``force`` is set.

    ``build`` fills a temporary folder beside the final one, which is renamed into
    place only when ``build`` returns; a failed or interrupted build leaves nothing
    that looks finished.
    """
    final = cache_root() / kind / key
    if final.is_dir() and not force:
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        build(work)
        if final.exists():
            shutil.rmtree(final)
        work.chmod(0o755)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final, False
