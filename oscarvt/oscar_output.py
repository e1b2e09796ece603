"""What OSCAR's installer prints, as oscarvt reads it: its steps, why it failed, and its loops.

Read from OSCAR's own code (repository oscar-cluster/oscar, line numbers at commit 0c35a10c).
``install_cluster`` (the top script) runs ``scripts/cli/main_cli``, which runs the eight steps.
Their banners are OSCAR's log sections (``lib/OSCAR/Logger.pm``: a section is a line of ``=``,
``== TITLE`` and another line of ``=``; a subsection is ``--- TITLE ---``), printed only from
verbosity 3 on (``OSCAR_VERBOSE``; the default is 1, which prints no step at all), so the
driver starts install_cluster with ``OSCAR_VERBOSE=3``.

A failed run ends with Perl's messages: whatever failed says why (a ``die``, ``croak`` or
``carp`` message, Perl adds `` at FILE line N.``; or a message of its own, such as define
clients' "You must build at least one image!"), then main_cli's "Failed on Step N - NAME"
(lines 135-224), then install_cluster's "Oscar Wizard failed to run successfully"
(line 348). :func:`failure_cause` picks the first of these that is not a wrapper: that is the
line a developer needs. A step that reads a menu without its answers loops, reprinting it
forever; :class:`RepeatWatch` notices that within a couple of hundred lines.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Iterable

from oscarvt.errors import guest_line

STEPS = {1: "Select Packages", 2: "Configure Packages", 3: "Install OSCAR Server Packages",
         4: "Build OSCAR Client Image", 5: "Define OSCAR Clients", 6: "Setup Networking",
         7: "Complete Cluster Setup", 8: "Test Cluster Setup"}
"""OSCAR's steps by number, named as main_cli's failure messages name them."""

# (pattern, step): the line main_cli (or the step's own script) prints as the step begins,
# at OSCAR_VERBOSE=3. scripts/cli/main_cli lines 134, 144-146 (step 3), 163, 172, 188-197, 218;
# configurator_cli line 67, build_oscar_image_cli 35, define_oscar_clients_cli 59; lib/OSCAR/CLI_MAC.pm
# line 89 (verbosity 2).
_BEGINS = [
    (re.compile(r"Running command: \S*/oscar-selector\b"), 1),
    (re.compile(r"^== Beginning the OSCAR Configurator\b"), 2),
    (re.compile(r"^== Installing OSCAR Server Packages\b"), 3),
    (re.compile(r"Running command: \S*/build_oscar_image_cli\b"), 4),
    (re.compile(r"^== Build OSCAR Client Image\b"), 4),
    (re.compile(r"Running command: \S*/define_oscar_clients_cli\b"), 5),
    (re.compile(r"^== Define OSCAR Clients\b"), 5),
    (re.compile(r"^== Running step 6 of the OSCAR wizard: Setup networking\b"), 6),
    (re.compile(r"Running script \""), 7),
    (re.compile(r"^== Complete Cluster Setup\b"), 7),
    (re.compile(r"^== Test Cluster Setup\b"), 8),
]
# (pattern, step): the line that says a step ended well (main_cli 148, 200, 221; CLI_MAC.pm 246).
_ENDS = [
    (re.compile(r"^== Packages Successfully Installed\b"), 3),
    (re.compile(r"\bStep 6: Completed successfully\b"), 6),
    (re.compile(r"Successfully completed the cluster install\b"), 7),
    (re.compile(r"Step 8 - Successfully tested the cluster setup\b"), 8),
]
# Each step's script (or module) as a failure names it: main_cli lines 128, 139, 145, 160, 169, 178, 198, 219.
_SCRIPTS = [("oscar-selector", 1), ("configurator_cli", 2), ("install_server", 3), ("build_oscar_image_cli", 4),
            ("define_oscar_clients_cli", 5), ("CLI_MAC", 6), ("post_install", 7), ("test_cluster", 8)]
# main_cli's and install_cluster's own failure lines, which wrap the cause (main_cli 135, 150-151,
# 164, 173, 178, 193-194, 202-203, 223-224; install_cluster 348-349).
_STEP_FAILED = re.compile(r"Failed (?:on )?Step ([1-8]) - |Failed to confirm client node boot before Step (7) - ")
_WRAPPERS = re.compile(r"^(?:ERROR: )?(?:Failed (?:on )?Step [1-8] - |Failed to confirm client node boot before "
                       r"Step 7 - |Oscar Wizard failed to run successfully\b|Packages not Installed!|"
                       r"Script failed\.  Exiting|Failed to properly (?:complete|test) the clu)")
# Perl's warnings (perldiag), which go on running: never the cause of a failure.
_WARNINGS = re.compile(r"^(?:Use of uninitialized value|Argument \".*\" isn't numeric|Useless use of|"
                       r"Name \"\S+\" used only once|Subroutine \S+ redefined|Possible |Deprecated |"
                       r"Scalar value |Odd number of |Prototype mismatch|Exiting subroutine|"
                       r"readline\(\) on |print\(\) on |Can't locate package \S+ for @|"
                       r"\S+ \(\.\.\.\) interpreted as function|Parentheses missing|"
                       r"Statement unlikely to be reached|\(Maybe you meant|Negative repeat count|"
                       r"Bareword found where operator expected|\s+\((?:Do you need|Missing operator))")
# Perl's own lines after a script or module failed to compile: the errors before them say why,
# the first of them the cause (perldiag).
_COMPILE_FAILED = re.compile(r"^(?:Compilation failed in require|BEGIN failed--compilation aborted|"
                             r"Execution of \S+ aborted due to compilation errors|\S+ has too many errors)")
_PERL_PLACE = re.compile(r" at \S+ line [0-9]+\b")  # "... at FILE line N." / ", near ..." / ", <FH> line N."
_BANNER = re.compile(r"^(?:== (.+)|-+ (?=\S)(.+?) -+)$")
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # a terminal's colours and moves (testprint's)
_DECORATION = re.compile(r"^[\s=*#~_+.:-]*$")
MAX_SHOWN = 300  # characters of a line quoted in a verdict


@dataclass(frozen=True)
class StepSeen:
    """A step's banner in OSCAR's output: its number, and whether it began or ended well."""

    number: int
    ended: bool


def step_seen(line: str) -> StepSeen | None:
    """The step a line of OSCAR's output begins or ends, if it is such a banner."""
    for pattern, number in _BEGINS:
        if pattern.search(line):
            return StepSeen(number, ended=False)
    for pattern, number in _ENDS:
        if pattern.search(line):
            return StepSeen(number, ended=True)
    return None


def step_title(number: int) -> str:
    """``Step 4 - Build OSCAR Client Image``, as OSCAR's messages name it."""
    return f"Step {number} - {STEPS[number]}"


def where(step: StepSeen | None) -> str:
    """Where in OSCAR's run a failure came: ``in step 4 - Build ...``, ``after step 3 - ...``."""
    if step is None:
        return "before its first step"
    return f"{'after' if step.ended else 'in'} step {step.number} - {STEPS[step.number]}"


def describe_failure(lines: list[str], step: StepSeen | None, status: int) -> str:
    """What a developer reads when install_cluster exited with ``status``: where it failed and the
    line that says why. ``lines``: the end of its output; ``step``: the last step banner seen.

    The step is the one main_cli's own failure line names, else the last banner, else the step
    whose script the cause names (a step that died before its banner).
    """
    cause = failure_cause(lines)
    named = _failed_step(lines)
    if named is not None and (step is None or step.number != named):
        step = StepSeen(named, ended=False)
    elif step is None and cause is not None:
        step = next((StepSeen(number, ended=False) for script, number in _SCRIPTS if script in cause), None)
    said = f": {cause}" if cause else f": install_cluster exited with status {status} and said nothing"
    return f"OSCAR failed {where(step)}{said}"


def _failed_step(lines: list[str]) -> int | None:
    """The step main_cli's own failure line names ("Failed on Step N - ..."), if the output has one."""
    for line in reversed(lines):
        found = _STEP_FAILED.search(line)
        if found:
            return int(found.group(1) or found.group(2))
    return None


def failure_cause(lines: list[str]) -> str | None:
    """The line that says why OSCAR failed: the last meaningful line before its wrappers.

    ``lines`` is the end of OSCAR's output. Passed over, from the end: blank and decoration
    lines (``****``), Perl's warnings, and main_cli's and install_cluster's failure lines, which
    are the answer only if the failing step said nothing after its banner. None if the output
    holds nothing but those.
    """
    wrapper = None
    compile_failed = False
    for at in range(len(lines) - 1, -1, -1):
        text = _unbannered(lines[at].strip())
        if _DECORATION.match(text) or _WARNINGS.match(lines[at]):
            continue
        if _COMPILE_FAILED.match(text):
            compile_failed = True
            continue
        if _WRAPPERS.match(text):
            if wrapper is None or not _STEP_FAILED.search(wrapper):
                wrapper = text  # main_cli's die that names the step, else the innermost, if nothing else
            continue
        if step_seen(lines[at].strip()) is not None:
            break  # a step's banner: what came before it is another step's
        return _shown(_first_compile_error(lines, at) if compile_failed else text)
    return _shown(wrapper) if wrapper else None


def _first_compile_error(lines: list[str], last: int) -> str:
    """The first error of the block of Perl's compile errors that ends at ``lines[last]``: the
    others often follow from it (a bad line 63 makes line 334 a syntax error too)."""
    first = last
    for at in range(last, -1, -1):
        line = lines[at]
        if _WARNINGS.match(line) or line.startswith(("\t", " ")):
            continue  # a warning, or the hint indented under one
        if not _PERL_PLACE.search(line):
            break
        first = at
    return lines[first].strip()


def _unbannered(text: str) -> str:
    """A log section's or subsection's title without its ``==`` or ``---`` (Logger.pm oscar_log)."""
    found = _BANNER.match(text)
    return (found.group(1) or found.group(2)) if found else text


def _shown(text: str) -> str:
    """A line of OSCAR's output fit to quote in a verdict: without terminal escapes (testprint's
    colours), as ``guest_line`` quotes the guest's text."""
    return guest_line(_ESCAPES.sub("", text).strip(), MAX_SHOWN)


class RepeatWatch:
    """Notices OSCAR printing the same few lines again and again: a menu reprinted forever.

    Within the last ``WINDOW`` lines that are not blank, if there are at most ``DISTINCT``
    different lines and one of them came ``REPEATS`` times or more, all within ``SECONDS``, OSCAR
    is in a loop. A step that waits and says so now and then is slower than that; an install's
    output is not that uniform.
    """

    WINDOW = 200
    DISTINCT = 30
    REPEATS = 10
    SECONDS = 30.0

    def __init__(self) -> None:
        self.lines: deque[tuple[str, float]] = deque()
        self.counts: Counter[str] = Counter()

    def take(self, line: str, now: float) -> str | None:
        """Take one line; the repeated line (for the verdict) once the output is a loop."""
        if not line.strip():
            return None
        self.lines.append((line, now))
        self.counts[line] += 1
        if len(self.lines) > self.WINDOW:
            old, _ = self.lines.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        if len(self.lines) < self.WINDOW or len(self.counts) > self.DISTINCT:
            return None
        if now - self.lines[0][1] > self.SECONDS:
            return None
        return most_repeated(line for line, _ in self.lines)


def most_repeated(lines: Iterable[str]) -> str | None:
    """The line that comes most often among ``lines``, decoration aside, if any comes
    ``RepeatWatch.REPEATS`` times or more; shown as a verdict quotes it."""
    counts = Counter(line for line in lines if not _DECORATION.match(line.strip()))
    if not counts:
        return None
    line, times = counts.most_common(1)[0]
    return _shown(line.strip()) if times >= RepeatWatch.REPEATS else None
