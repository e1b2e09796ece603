"""The first bad commit between a builder's last green revision and its red one, found by probe builds.

Pure: no Buildbot, no repository. The master builds the revision ``next_probe()`` names, tells
``record()`` how that probe build went (``judge`` turns its verdict into a ``Probe``), and repeats
until ``result`` is not None.

The revisions are the last green one (index 0) and the n commits after it, oldest first, the red
build's revision last (index n). A revision is *bad* when its probe fails the same way as the red
build (``same_failure``); once bad, later revisions are taken to stay bad. The search is a binary
search in which neither end is taken on trust, since the green build may be days old and the red one
a fluke:

- the last green revision is probed again when the search comes down to it: if it now fails the
  same way, no commit of the range is to blame (the template, the spec or the host changed);
- the red revision is probed again when the search comes down to it: if it now passes, its failure
  did not come back and no commit is blamed.

That is n + 2 possible answers, told apart with at most ceil(log2(n + 2)) probes, which is at most
ceil(log2 n) + 1 for n >= 2. With a single commit (n = 1) the red build stands for the probe of its
revision and the one probe goes to the last green revision, to stay within one probe.

A probe that fails differently (``OTHER``: another phase, or another message once what varies
between runs is masked) is treated like ``git bisect skip``: nothing is concluded from it, and the
next probe is the untested revision nearest the middle. When only such revisions are left between
the last good and the first bad one, the result is undecided and names them. A probe that met
infrastructure trouble is not counted: the same revision is asked for again, and after
``MAX_RETRIES`` such probes it is set aside like one that failed differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Sequence

from oscarvt.errors import INFRASTRUCTURE, PRODUCT

MAX_RETRIES = 3  # probes of one revision that may meet infrastructure trouble before it is set aside


class Outcome(Enum):
    """How a probe build went, as the search reads it."""

    GOOD = "good"  # it passed
    BAD = "bad"  # it failed the same way as the red build
    OTHER = "other"  # it failed differently (another phase or message, or not the product's blame)
    INFRASTRUCTURE = "infrastructure"  # the host or the harness failed it: retried, not counted


@dataclass(frozen=True)
class Failure:
    """Where and how a build failed: its failed phase and that phase's verdict message."""

    phase: str
    message: str


@dataclass(frozen=True)
class Probe:
    """A probe build's outcome, with its failure if it failed."""

    outcome: Outcome
    failure: Failure | None = None


Verdict = Literal["first bad commit", "no bad commit", "undecided"]


@dataclass(frozen=True)
class Result:
    """What the search found: the first bad commit, that no commit is to blame, or the commits it could be."""

    verdict: Verdict
    revision: str | None  # the first bad commit, for "first bad commit"
    candidates: tuple[str, ...]  # for "undecided": the commits it could be, oldest first
    or_none: bool  # for "undecided": the range may also hold no bad commit (an end of it could not be judged)
    why: str  # what the verdict rests on, in one line
    set_aside: tuple[tuple[str, Probe], ...]  # the revisions that failed differently or could not be built
    probes: int  # probe builds counted (infrastructure trouble is not)
    builds: int  # probe builds run, retries included

    def line(self) -> str:
        """The result in one line: ``first bad commit: REV (3 probes)``, ``no bad commit: ...``, ``undecided: ...``."""
        said = self.revision if self.verdict == "first bad commit" else self.why
        return f"{self.verdict}: {said} ({self.probes} probe{'' if self.probes == 1 else 's'})"


# What varies between two runs of the same failure, masked in that order: paths (a build's folder, a temporary
# one) to their last part, dates and times, hexadecimal addresses and hashes, process ids, durations, sizes,
# line numbers of a program's source (a commit that adds lines moves them) and numbers of four digits or more
# (ports, counts, time stamps). Small numbers stay: OSCAR's step, an exit status, a node's name.
_MASK_PATTERNS = (
    (r"(?<![\w.:/~-])(?:/[^\s/'\"(),;:]+)+/?", ""),  # "": its last part, see _last_part
    (r"\b\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?)?(?:Z|[+-]\d\d:?\d\d)?", "<time>"),
    (r"\b\d{1,2}:\d\d:\d\d(?:[.,]\d+)?\b", "<time>"),
    (r"\[\s*\d+\.\d+\]", "[<time>]"),
    (r"\b0x[0-9a-f]+\b", "<hex>"),
    (r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", "<hex>"),
    (r"\bpid\s*[=:]?\s*\d+", "pid <n>"),
    (r"(?<=\w)\[\d+\]", "[<n>]"),
    (r"\b\d+(?:\.\d+)?\s?(?:ms|s|secs?|seconds?|mins?|minutes?|h|hours?)\b", "<duration>"),
    (r"\b\d+(?:\.\d+)?\s?(?:[kmgt]i?b|bytes?)\b", "<size>"),
    (r"\bline \d+", "line <n>"),
    (r"\b\d{4,}\b", "<n>"),
    (r"\s+", " "),
)
_MASKS = tuple((re.compile(pattern, re.IGNORECASE), mask) for pattern, mask in _MASK_PATTERNS)


def masked(message: str) -> str:
    """A failure's message with what varies between runs masked (see ``_MASKS``), to compare two of them."""
    for pattern, mask in _MASKS:
        message = pattern.sub(mask or _last_part, message)
    return message.strip()


def _last_part(path: re.Match[str]) -> str:
    """A path as masked: ``.../`` and its last part, numbers masked (``/w/b/clusters/42/n1.log``: ``.../n<n>.log``)."""
    last = path.group(0).rstrip("/").rsplit("/", 1)[-1]
    return f".../{re.sub(r'[0-9]+', '<n>', last)}"


def same_failure(red: Failure, probe: Failure) -> bool:
    """Whether ``probe`` failed the same way as ``red``: the same phase, and the same message once masked."""
    return red.phase == probe.phase and masked(red.message) == masked(probe.message)


def judge(red: Failure, blame: str | None, failure: Failure | None) -> Probe:
    """A probe build's outcome from its verdict: ``failure`` None if it passed, else its failed phase and
    message and ``blame`` (``oscarvt.errors``'s word). Bad input is another failure, not the red build's."""
    if failure is None:
        return Probe(Outcome.GOOD)
    if blame == INFRASTRUCTURE:
        return Probe(Outcome.INFRASTRUCTURE, failure)
    if blame == PRODUCT and same_failure(red, failure):
        return Probe(Outcome.BAD, failure)
    return Probe(Outcome.OTHER, failure)


class Bisection:
    """The search for the first bad commit (see the module's documentation for how it goes)."""

    def __init__(self, last_green: str, revisions: Sequence[str], max_retries: int = MAX_RETRIES) -> None:
        """``revisions``: the commits after ``last_green``, oldest first, the red build's revision last."""
        if not revisions:
            raise ValueError("no revision after the last green one")
        self.revisions: tuple[str, ...] = (last_green, *revisions)
        if len(set(self.revisions)) != len(self.revisions):
            raise ValueError("a revision is listed twice")
        self.max_retries = max_retries
        count = len(revisions)
        self._good = -1  # the newest index probed good (-1: none)
        self._bad = count if count == 1 else count + 1  # the oldest index known bad (count + 1: none)
        self._set_aside: dict[int, Probe] = {}
        self._retries: dict[int, int] = {}
        self.probes = 0
        self.builds = 0

    def next_probe(self) -> str | None:
        """The revision to build next, or None when the search is over."""
        index = self._next_index()
        return None if index is None else self.revisions[index]

    def record(self, revision: str, probe: Probe) -> None:
        """Take in how the probe build of ``revision`` went. ValueError for a revision the search does not need."""
        index = self._index(revision)
        self.builds += 1
        if probe.outcome is Outcome.INFRASTRUCTURE:
            self._retries[index] = self._retries.get(index, 0) + 1
            if self._retries[index] >= self.max_retries:
                self._set_aside[index] = probe
            return
        self.probes += 1
        if probe.outcome is Outcome.GOOD:
            self._good = index
        elif probe.outcome is Outcome.BAD:
            self._bad = index
        else:
            self._set_aside[index] = probe

    @property
    def result(self) -> Result | None:
        """What the search found, or None while it still needs a probe."""
        if self._next_index() is not None:
            return None
        between = range(self._good + 1, self._bad)  # all set aside
        if not between:
            return self._decided()
        last = len(self.revisions) - 1
        commits = tuple(self.revisions[i] for i in (*between, self._bad) if 1 <= i <= last)
        maybe_none = self._good < 0 or self._bad > last
        unjudged = ", ".join(f"{self.revisions[i]} {self._why_set_aside(i)}" for i in between)
        why = f"the first bad commit is one of {', '.join(commits)}{' or none' if maybe_none else ''}: {unjudged}"
        return self._result("undecided", None, commits, why, maybe_none)

    def _why_set_aside(self, index: int) -> str:
        """Why the revision at ``index`` was set aside."""
        if self._set_aside[index].outcome is Outcome.INFRASTRUCTURE:
            return f"could not be built ({self._retries[index]} probes met infrastructure trouble)"
        return "failed differently"

    def _decided(self) -> Result:
        last = len(self.revisions) - 1
        if self._bad == 0:
            return self._result("no bad commit", None, (), f"the last green revision {self.revisions[0]} fails the "
                                "same way now (a change of the template, spec or host, not a commit)")
        if self._bad > last:
            return self._result("no bad commit", None, (), f"the red revision {self.revisions[last]} passes now "
                                "(its failure did not come back)")
        first = self.revisions[self._bad]
        return self._result("first bad commit", first, (), f"{self.revisions[self._bad - 1]} passes, {first} "
                            "fails the same way as the red build")

    def _result(self, verdict: Verdict, revision: str | None, candidates: tuple[str, ...], why: str,
                or_none: bool = False) -> Result:
        set_aside = tuple((self.revisions[i], self._set_aside[i]) for i in sorted(self._set_aside))
        return Result(verdict, revision, candidates, or_none, why, set_aside, self.probes, self.builds)

    def _next_index(self) -> int | None:
        """The untested index nearest the middle of what is still open (the older of two as near)."""
        middle = (self._good + self._bad) / 2
        open_indexes = [i for i in range(self._good + 1, self._bad) if i not in self._set_aside]
        return min(open_indexes, key=lambda i: (abs(i - middle), i), default=None)

    def _index(self, revision: str) -> int:
        if revision not in self.revisions:
            raise ValueError(f"{revision} is not a revision of this bisection")
        index = self.revisions.index(revision)
        if not self._good < index < self._bad or index in self._set_aside:
            raise ValueError(f"{revision} is already judged or outside what is still open")
        return index
