"""OSCAR's cluster test results, read from what its step 8 prints.

OSCAR (repository oscar-cluster/oscar, line numbers at commit 0c35a10c) writes no report file:
main_cli (scripts/cli/main_cli 217-226) runs testing/test_cluster, whose tests print each result
through testing/testprint, one line per result, in OSCAR's output. :func:`oscar_test_results`
reads those lines back.

What test_cluster runs, in order: each selected package's ``test_root`` as root (lines 128-149,
header ``About to run SCRIPT``), its own ``/home mounts`` test (176-191), testing/ssh_user_tests
as the test user (199-277; three tests of the first node, ``SSH ping test``, ``SSH
server->node``, ``SSH node->server``, ssh_user_tests 15-43), each package's ``test_user`` (281-293, no header below
``OSCAR_VERBOSE=5``, where lib/OSCAR/Package.pm 294 prints ``About to run SCRIPT as USER``), then
the APItest batches of packages that have them (306-351, ``Running Installation tests for PKG``).

Its exit status (line 356) counts the ``test_root`` and ``test_user`` scripts that exited non-zero
and the ``apitest`` runs that did: ``/home mounts``, ssh_user_tests (exit 0, line 46) and
the APItest results (``apitest`` exits 0 when tests fail) never count, so a run can exit 0 with
FAILED lines; main_cli fails step 8 on a non-zero status ("Failed on Step 8 - Test Cluster
Setup", 223-224). Its summary lines (``All tests passed, ...``, ``There are N failed/skipped
tests (see above).``, lines 69-87) are printed with ``--wait`` only, as the GUI runs it, never by
main_cli.

testprint needs ``TERM``: without it, ``Term::Cap->Tgetent`` (testprint line 63) dies with
``TERM not set at .../testprint line 63.`` before printing anything, and with an unknown TERM
with ``Can't find a valid termcap file``; the callers ignore its exit status, so the results are
lost and test_cluster may still exit 0. An SSH command without a terminal has no TERM: start
install_cluster with one set (any known name, e.g. ``TERM=dumb``). Such deaths are reported
here as one failed result, class ``testprint``.
"""

from __future__ import annotations

import re
from posixpath import basename, dirname

from oscarvt.errors import guest_line
from oscarvt.masking import mask_credentials

MAX_TEXT = 8 << 20  # characters (or bytes) of output read: its end, as step 8 comes last
MAX_LINES = 100_000  # lines of it read, its last
MAX_LINE = 8192  # characters of a line read (its end, where a result's word is)
MAX_RESULTS = 5000
NAME_CHARS = 200  # of a class or name
MESSAGE_CHARS = 500
DETAIL_LINES = 3  # lines printed before a failed or skipped result kept in its message

# testprint lines 83-95: "[", bold colour, the word, reset, "]"; escapes are gone once read.
_WORDS = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped"}
# Terminal controls in a line: CSI and OSC escapes, other escapes, carriage return, backspace.
# The classes are disjoint, so a match costs time linear in its length.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\r\b]")
_TO_COLUMN_1 = {"\r", "\x1b[G", "\x1b[0G", "\x1b[1G"}  # testprint line 69 prints "\x1b[1G"
# test_cluster 142 (root tests) and Package.pm 294 (a subsection: "--- About to run S as U ---").
_ABOUT_TO_RUN = re.compile(r"-* ?About to run (\S+)(?: as \S+)? ?-*")
_APITESTS_FOR = re.compile(r"Running (?:Installation|Validation) tests for (\S+)")  # test_cluster 325, 347
# APItest's result line (repository oscar-cluster/oscar-apitest, libapitest/libapitest.py 81-86 and
# 730-738, libapitest/jobManager.py 756-767 and 814-822): "[STATUS]" padded to 23 with its colour
# escapes, the local time, the test or batch file; FAILDEP adds lines indented by 38 spaces.
_APITEST = re.compile(r"\[([A-Z]{2,16})\] +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(\S+)(?: (.*))?")
_FAILDEP_MORE = ("PREREQ: ", "Expected: ")
_PERL_HANDLE = re.compile(r", <[^<>]{0,200}> (?:line|chunk) \d+$")  # Perl's ", <STDIN> line 1" before the "."
_SSH_USER_TESTS = {"SSH ping test", "SSH server->node", "SSH node->server"}  # ssh_user_tests 24-43
_HOME_MOUNTS = "/home mounts"  # test_cluster 176-191


def oscar_test_results(output: str | bytes) -> list[dict[str, str]]:
    """The cluster test results in OSCAR's output of step 8, in order: dicts of class, name,
    result (passed/failed/skipped), message and seconds (always empty: OSCAR prints no duration).

    ``output`` is the text as OSCAR printed it; its end is read, at most ``MAX_TEXT``
    characters in ``MAX_LINES`` lines. Lines are read as a terminal shows them: a carriage
    return or ``ESC[1G`` starts the line anew, a backspace takes back a character, other
    escapes are dropped. Read:

    - testprint's result line (testing/testprint 69-95): ``ESC[1G``, the label and the status
      text, each cut and padded to C columns (C = (width - 17) // 2 from ``stty size``, 60
      columns without a terminal: C = 21, line 74-81; Perl counts bytes), a space between,
      then ``[PASSED]``, ``[FAILED]`` or ``[SKIPPED]``. The label is the name (as cut), the
      status text the message; a failed or skipped result's message adds the last lines the
      test printed before it (e.g. packages/maui/testing/test_root 16). Without a result word
      testprint prints the label alone (progress, e.g. ssh_user_tests 29), which the next call's
      ``ESC[1G`` overwrites; when stdin is no terminal stty's error comes between them
      (``stty: 'standard input': Inappropriate ioctl for device``), which is passed over.
    - The class: ``test_cluster`` for its ``/home mounts``, ``ssh_user_tests`` for that
      script's three labels, else the package of the last header: ``About to run
      .../PKG/test_root`` (test_cluster 142; ``... as USER``, Package.pm 294), ``test_user``
      after ``Performing user tests...`` (test_cluster 271), the package named by ``Running
      Installation tests for PKG`` (325, 347) for APItest lines.
    - APItest's line (``[PASS]``, ``[FAIL]``, ``[FAILDEP]``, ``[TIMEDOUT]``, a time, the file; see
      ``_APITEST``): the file is the name; all but PASS failed.
    - testprint's death, ``MESSAGE at .../testprint line N.`` (testprint 63 without TERM): one
      failed result, class and name ``testprint``, saying how many times and why.

    Control characters never reach a field (:func:`oscarvt.errors.shown` quotes what is left of
    them); URLs' credentials are masked; at most ``MAX_RESULTS`` results.
    """
    text = output[-MAX_TEXT:].decode(errors="replace") if isinstance(output, bytes) else output[-MAX_TEXT:]
    start = len(text) - text.endswith("\n")  # a line's end is no line's start
    for _ in range(MAX_LINES):
        start = text.rfind("\n", 0, start)
        if start < 0:
            break
    reader = _Reader()
    for raw in text[start + 1:].split("\n"):
        reader.read(*_visible(raw[-MAX_LINE:].rstrip("\r")))
    return reader.finish()


class _Reader:
    """The state while reading step 8's output one line at a time."""

    def __init__(self) -> None:
        self.results: list[dict[str, str]] = []
        self.where = "test_cluster"  # the class of results whose label does not say it
        self.details: list[str] = []  # lines printed since the last result or header
        self.faildep: dict[str, str] | None = None  # the last result, if APItest's FAILDEP
        self.deaths: list[str] = []  # testprint's distinct death messages
        self.died = 0
        self.death: dict[str, str] | None = None

    def read(self, line: str, overwrote: bool) -> None:
        """Take one line as a terminal shows it; ``overwrote``: it overwrote text, as testprint's
        next call does after one without a result word (its test starts: earlier lines are not its)."""
        if overwrote:
            self.details = []
        text = line.strip()
        if self.faildep is not None and line.startswith(" ") and text.startswith(_FAILDEP_MORE):
            self.faildep["message"] = _field(f"{self.faildep['message']} {text}", MESSAGE_CHARS)
            return
        self.faildep = None
        if self._result(line, text) or self._header(text) or self._death(text):
            return
        if text and not text.startswith("stty: ") and not _banner(text):
            self.details = [*self.details[-(DETAIL_LINES - 1):], text[:MESSAGE_CHARS]]

    def _result(self, line: str, text: str) -> bool:
        for word, result in _WORDS.items():
            if text.endswith(f"[{word}]"):
                label, status = _columns(line.rstrip()[: -len(word) - 2])
                if label == _HOME_MOUNTS:
                    where = "test_cluster"
                elif label in _SSH_USER_TESTS:
                    where = "ssh_user_tests"
                else:
                    where = self.where
                self._add(where, label, result, status)
                return True
        found = _APITEST.fullmatch(text)
        if found is None:
            return False
        status, name, rest = found.group(1), found.group(2), found.group(3) or ""
        said = ": ".join(part for part in ("" if status in ("PASS", "FAIL") else status, rest) if part)
        self._add(self.where, name, "passed" if status == "PASS" else "failed", said)
        if status == "FAILDEP" and self.results:
            self.faildep = self.results[-1]
        return True

    def _header(self, text: str) -> bool:
        found = _ABOUT_TO_RUN.fullmatch(text) or _APITESTS_FOR.fullmatch(text)
        if found is not None:
            path = found.group(1)
            self.where = basename(dirname(path)) or path
        elif text == "Performing user tests...":
            self.where = "test_user"
        elif text in ("Performing root tests...", "== Test Cluster Setup"):
            self.where = "test_cluster"
        else:
            return False
        self.details = []
        return True

    def _death(self, text: str) -> bool:
        message, at, where = text.rpartition(" at ")
        where = _PERL_HANDLE.sub("", where.removesuffix("."))
        path, line, number = where.rpartition(" line ")
        if not (at and line and number.isdigit() and basename(path) == "testprint"):
            return False
        if not message.startswith("BEGIN failed--"):  # Perl's second line after a failed "use"
            self.died += 1
            if message not in self.deaths and len(self.deaths) < 3:
                self.deaths.append(message)
        if self.death is None:
            self.death = self._add("testprint", "testprint", "failed", "")
        return True

    def _add(self, where: str, name: str, result: str, message: str) -> dict[str, str] | None:
        if result != "passed" and self.details:
            message = " | ".join([message, *self.details] if message else self.details)
        self.details = []
        if len(self.results) >= MAX_RESULTS:
            return None
        entry = {"class": _field(where, NAME_CHARS), "name": _field(name, NAME_CHARS), "result": result,
                 "message": _field(message, MESSAGE_CHARS), "seconds": ""}
        self.results.append(entry)
        return entry

    def finish(self) -> list[dict[str, str]]:
        """The results read."""
        if self.death is not None:
            why = "; ".join(self.deaths) or "no message"
            self.death["message"] = _field(f"testprint died {self.died} times, so those tests printed no result: "
                                           f"{why}", MESSAGE_CHARS)
        return self.results


def _visible(line: str) -> tuple[str, bool]:
    """``line`` as a terminal shows it: from its last carriage return or move to column 1 on,
    backspaces applied, escapes dropped, tabs as spaces; and whether such a move overwrote text
    (a testprint call without a result word, whose label the next call overwrites)."""
    chars: list[str] = []
    overwrote = False
    start = 0
    for found in _CONTROL.finditer(line):
        chars.extend(line[start:found.start()])
        start = found.end()
        code = found.group()
        if code in _TO_COLUMN_1:
            overwrote = overwrote or bool(chars)
            chars.clear()
        elif code == "\b" and chars:
            chars.pop()
    chars.extend(line[start:])
    return "".join(chars).replace("\t", " "), overwrote


def _banner(text: str) -> bool:
    """Whether a line is a banner of OSCAR's Logger (lib/OSCAR/Logger.pm 109-125: a section's
    ``====`` lines and ``== TITLE``, a subsection's ``--- TITLE ---``), not a test's words."""
    return text.startswith("== ") or not text.strip("=-") or (text.startswith("-") and text.endswith("-"))


def _columns(body: str) -> tuple[str, str]:
    """testprint's label and status text from what it printed before the result word.

    testprint pads and cuts both to C columns with a space between (line 81), 2C + 1 bytes in
    all; a body of another length (printed otherwise) is split at its first run of spaces.
    """
    data = body.encode(errors="replace")
    width = len(data) // 2
    if len(data) % 2 == 1 and data[width:width + 1] == b" ":
        return data[:width].decode(errors="replace").strip(), data[width + 1:].decode(errors="replace").strip()
    label, _, status = body.strip().partition("  ")
    return label.strip(), status.strip()


def _field(text: str, limit: int) -> str:
    """``text`` fit for a result's field: one printable line (else quoted by ``shown``), at most
    ``limit`` characters, credentials in URLs masked."""
    return guest_line(mask_credentials(text.strip()[:limit])[:limit], limit)
