"""The build matrix: Debian suites x architectures x boot methods, less the excluded cells.

Each cell becomes one builder, named after it (``bookworm-arm64-cdrom``), whose cluster
spec names its template by suite and arch, so each worker finds its own template and no
path or recipe hash is pasted into the settings. Commits build a chosen subset of the
cells (by default the first cell of each architecture); the nightly builds every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

RELEASES = {"bullseye": "debian-11", "bookworm": "debian-12", "trixie": "debian-13"}
AXES = ("suite", "arch", "boot")


@dataclass(frozen=True)
class Cell:
    """One combination of the matrix's axes."""

    suite: str
    arch: str
    boot: str

    @property
    def name(self) -> str:
        """The builder's name: ``SUITE-ARCH-BOOT``."""
        return f"{self.suite}-{self.arch}-{self.boot}"

    @property
    def distribution(self) -> str:
        """The distribution as builders are tagged with it (``debian-12``)."""
        return RELEASES.get(self.suite, f"debian-{self.suite}")

    def matches(self, pattern: dict[str, str]) -> bool:
        """Whether every axis ``pattern`` names has that value here (``{arch: arm64}``: all arm64 cells)."""
        return all(getattr(self, axis) == value for axis, value in pattern.items())


def expand(suites: list[str], arches: list[str], boots: list[str], exclude: list[dict[str, str]]) -> list[Cell]:
    """Every cell, in the order of the axes as given, without those an ``exclude`` pattern matches."""
    every = [Cell(suite, arch, boot) for suite in suites for arch in arches for boot in boots]
    return [cell for cell in every if not any(cell.matches(pattern) for pattern in exclude)]


def commit_cells(cells: list[Cell], chosen: list[dict[str, str]] | None) -> set[str]:
    """Names of the cells a commit builds: those ``chosen`` patterns match, or the first of each arch."""
    if chosen is None:
        first: dict[str, str] = {}
        for cell in cells:
            first.setdefault(cell.arch, cell.name)
        return set(first.values())
    return {cell.name for cell in cells if any(cell.matches(pattern) for pattern in chosen)}
