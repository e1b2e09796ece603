"""The commits between a builder's last green revision and a later one, oldest first, for git and SVN.

``git_commits`` keeps a mirror clone of the repository in a folder the caller gives (cloned the first
time, updated with ``git fetch`` after) and lists the commits on the first-parent line of BAD that GOOD
does not have (``git log --first-parent GOOD..BAD``). ``svn_commits`` asks the server for
``svn log --xml -r BAD:GOOD+1 URL@BAD``: revisions that do not touch the URL's path are not listed.

What a repository holds is untrusted: authors and subjects are one printable line, cut (``guest_line``),
their repr when they hold anything else; an author's address is kept only when it looks like one. At most
``MAX_COMMITS`` commits are listed, the newest; ``Commits.left_out`` says how many older ones were not,
and ``Commits.base`` is then the newest of those, the revision a bisection starts from.

A revision that is not in the repository, a GOOD that is not older than BAD (not its ancestor in git), a
URL where there is no repository, or credentials it refuses, are ``InputError``; a server that does not
answer, a program that is missing or runs past its timeout are ``InfraError``. Each is one line.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from lxml import etree

from oscarvt.errors import InfraError, InputError, OscarvtError, guest_line, shown
from oscarvt.masking import mask_credentials

MAX_COMMITS = 1000
AUTHOR_LIMIT = 80  # characters of an author's name shown
SUBJECT_LIMIT = 200  # characters of a subject shown
RECORD_BYTES = 8192  # bytes of one commit's git log record read (its hash, author, address and first line)
FETCH_TIMEOUT = 600.0  # seconds for a clone, a fetch or an svn log from the server
LOCAL_TIMEOUT = 60.0  # seconds for a question to the local mirror
EMAIL = re.compile(r"[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,190}")
SVN_REVISION = re.compile(r"r?([0-9]{1,10})")
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh", "LC_ALL": "C",
           "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
# git's words for a URL with no repository behind it, or credentials it refuses (the rest is the server's trouble)
GIT_INPUT_SIGNS = ("does not appear to be a git repository", "does not exist", "not found", "Authentication failed",
                   "terminal prompts disabled", "could not read Username", "Permission denied", "error: 403",
                   "error: 404", "not allowed", "not a git repository")
# SVN's error codes for a server that does not answer (the rest is the URL's or the revision's)
SVN_INFRA_CODES = ("E000101", "E000104", "E000110", "E000111", "E000113", "E670002", "E670008", "E175002",
                   "E175012", "E120108", "E210002", "E210003")

Blamer = Callable[[str, str, str], OscarvtError]  # (where, verb, its errors): the error a failed command raises


@dataclass(frozen=True)
class Commit:
    """One commit as shown: its revision, author (and address, if git has one) and subject."""

    revision: str
    author: str
    subject: str
    email: str | None = None


@dataclass(frozen=True)
class Commits:
    """The commits after ``base``, oldest first; ``left_out`` older ones were not listed (more than the limit)."""

    base: str
    commits: tuple[Commit, ...]
    left_out: int = 0

    def note(self) -> str:
        """What the list leaves out, in a line, or ''."""
        if not self.left_out:
            return ""
        plural = "" if self.left_out == 1 else "s"
        return (f"{self.left_out} older commit{plural} not listed (at most {len(self.commits)}); "
                f"the oldest listed follows {self.base}")


def git_commits(url: str, mirror: Path, good: str, bad: str, limit: int = MAX_COMMITS,
                fetch: bool = True) -> Commits:
    """The commits on BAD's first-parent line after GOOD, from a mirror of ``url`` in ``mirror`` (updated first
    if ``fetch``)."""
    check_text("the repository's URL", url)
    where = mask_credentials(url)
    if fetch:
        update_mirror(url, mirror)
    elif not (mirror / "HEAD").is_file():
        raise InputError(f"{mirror}: no git mirror of {where} there (fetch it first)")
    good_hash, bad_hash = (git_commit(mirror, where, revision) for revision in (good, bad))
    ancestor = _git(mirror, where, ["merge-base", "--is-ancestor", good_hash, bad_hash], check=False)
    if ancestor.returncode not in (0, 1):
        raise git_error(where, "merge-base", ancestor.stderr)
    if ancestor.returncode == 1:
        raise InputError(f"{where}: {shown(good)} is not an ancestor of {shown(bad)}")
    if good_hash == bad_hash:
        return Commits(good_hash, ())
    listed = list(_git_log(mirror, where, good_hash, bad_hash, limit + 1))
    if len(listed) <= limit:
        return Commits(good_hash, tuple(reversed(listed)))
    count = _git(mirror, where, ["rev-list", "--count", "--first-parent", f"{good_hash}..{bad_hash}"]).stdout
    return Commits(listed[limit].revision, tuple(reversed(listed[:limit])), int(count) - limit)


def update_mirror(url: str, mirror: Path) -> None:
    """Clone ``url`` as a mirror into ``mirror`` if it holds none yet, else fetch what is new (pruning what went)."""
    where = mask_credentials(url)
    if (mirror / "HEAD").is_file():
        _git(mirror, where, ["config", "remote.origin.url", url])
        _git(mirror, where, ["fetch", "--prune", "--quiet", "origin"], FETCH_TIMEOUT)
        return
    if mirror.exists() and (not mirror.is_dir() or any(mirror.iterdir())):
        raise InputError(f"{mirror}: not a git mirror, and not empty")
    _run_git(["git", "clone", "--mirror", "--quiet", "--", url, str(mirror)], where, FETCH_TIMEOUT)


def git_commit(mirror: Path, where: str, revision: str) -> str:
    """The full hash of the commit ``revision`` names (a hash, branch or tag) in the mirror."""
    check_text("a revision", revision)
    found = _git(mirror, where, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"],
                 check=False)
    if found.returncode != 0:
        raise InputError(f"{where}: no commit {shown(revision)}")
    return found.stdout.strip()


def _git_log(mirror: Path, where: str, good: str, bad: str, count: int) -> Iterator[Commit]:
    """The first ``count`` commits of ``git log --first-parent GOOD..BAD``, newest first."""
    argv = ["git", "--git-dir", str(mirror), "log", "--first-parent", "-z", "--format=%H%n%an%n%ae%n%B",
            f"--max-count={count}", f"{good}..{bad}"]
    with tempfile.TemporaryFile() as output:
        _run_git(argv, where, LOCAL_TIMEOUT, stdout=output)
        output.seek(0)
        for record in _records(output, RECORD_BYTES):
            yield _git_record(record)


def _git_record(record: bytes) -> Commit:
    """A commit from its log record: hash, author, address and message, a line each (the message's first)."""
    fields = record.decode(errors="replace").split("\n", 4)
    revision, author, email, subject = (fields + ["", "", "", ""])[:4]
    return Commit(revision, shown_author(author), shown_subject(subject),
                  email if EMAIL.fullmatch(email) else None)


def _records(stream: IO[bytes], keep: int) -> Iterator[bytes]:
    """The NUL-separated records of ``stream``, each cut after ``keep`` bytes (read in chunks: any size)."""
    record = b""
    while chunk := stream.read(1 << 16):
        *ended, tail = chunk.split(b"\0")
        for part in ended:
            yield (record + part[:keep])[:keep]
            record = b""
        record = (record + tail[:keep])[:keep]
    if record:
        yield record


def svn_commits(url: str, good: str, bad: str, limit: int = MAX_COMMITS) -> Commits:
    """The revisions after GOOD up to BAD that changed ``url``'s path (as it was at BAD)."""
    check_text("the repository's URL", url)
    where = mask_credentials(url)
    good_number, bad_number = svn_revision(where, good), svn_revision(where, bad)
    if good_number > bad_number:
        raise InputError(f"{where}: revision {good_number} is not older than {bad_number}")
    if good_number == bad_number:
        return Commits(str(good_number), ())
    argv = ["svn", "log", "--xml", "--non-interactive", "-r", f"{bad_number}:{good_number + 1}",
            f"--limit={limit + 1}", "--", f"{url}@{bad_number}"]
    with tempfile.TemporaryFile() as output:
        _run(argv, where, FETCH_TIMEOUT, svn_error, stdout=output)
        output.seek(0)
        listed = _svn_entries(output, where)
    if len(listed) <= limit:
        return Commits(str(good_number), tuple(reversed(listed)))
    newest_left_out = listed[limit].revision
    older = _svn_older(url, where, good_number, int(newest_left_out))
    return Commits(newest_left_out, tuple(reversed(listed[:limit])), older)


def svn_revision(where: str, revision: str) -> int:
    """An SVN revision's number (``1234`` or ``r1234``)."""
    found = SVN_REVISION.fullmatch(revision)
    if found is None:
        raise InputError(f"{where}: {shown(revision)} is not an SVN revision number")
    return int(found.group(1))


def _svn_entries(output: IO[bytes], where: str) -> list[Commit]:
    """The log entries of ``svn log --xml``, in its order, read one by one."""
    listed: list[Commit] = []
    try:
        for _, entry in etree.iterparse(output, events=("end",), tag="logentry", resolve_entities=False,
                                        no_network=True, huge_tree=False):
            revision = entry.get("revision", "")
            if not revision.isdigit():
                raise InputError(f"{where}: svn log gave a revision that is no number: {shown(revision)}")
            message = entry.findtext("msg") or ""
            listed.append(Commit(revision, shown_author(entry.findtext("author") or "(no author)"),
                                 shown_subject(message.split("\n", 1)[0])))
            entry.clear()
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{where}: svn log's answer is not readable XML: {exc}") from None  # the repository's
    return listed


def _svn_older(url: str, where: str, good: int, newest: int) -> int:
    """How many revisions after ``good`` up to ``newest`` changed the path (the ones left out of a long list)."""
    argv = ["svn", "log", "--quiet", "--non-interactive", "-r", f"{newest}:{good + 1}", "--", f"{url}@{newest}"]
    text = _run(argv, where, FETCH_TIMEOUT, svn_error).stdout
    return sum(1 for line in text.splitlines() if re.match(r"r[0-9]+ \|", line))


def shown_author(author: str) -> str:
    """An author's name as shown: one printable line, cut, or its repr."""
    return guest_line(author.strip(), AUTHOR_LIMIT)


def shown_subject(subject: str) -> str:
    """A subject as shown: one printable line, cut, or its repr."""
    return guest_line(subject.strip(), SUBJECT_LIMIT)


def check_text(what: str, value: str) -> None:
    """Refuse a URL or revision that is not one line of text, or that git or svn would take for an option."""
    if not value or not value.isprintable() or value.startswith("-"):
        raise InputError(f"{what} must be one line of text not starting with '-', not {shown(mask_credentials(value))}")


def _git(mirror: Path, where: str, args: list[str], timeout: float = LOCAL_TIMEOUT,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """``git --git-dir MIRROR ARGS``; a failure is an error unless not ``check``."""
    argv = ["git", "--git-dir", str(mirror), *args]
    if check:
        return _run_git(argv, where, timeout)
    return _run(argv, where, timeout, None)


def _run_git(argv: list[str], where: str, timeout: float,
             stdout: IO[bytes] | None = None) -> subprocess.CompletedProcess[str]:
    return _run(argv, where, timeout, git_error, stdout)


def _run(argv: list[str], where: str, timeout: float, error: Blamer | None,
         stdout: IO[bytes] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a git or svn command with no prompts; an error from ``error`` if it fails (when it is given)."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout or subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env={**os.environ, **GIT_ENV})
    except FileNotFoundError:
        raise InfraError(f"{where}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"{where}: {argv[0]} {_verb(argv)} still running after {timeout:.0f}s") from None
    stderr = mask_credentials(done.stderr.decode(errors="replace"))
    result = subprocess.CompletedProcess(argv, done.returncode, (done.stdout or b"").decode(errors="replace"), stderr)
    if done.returncode != 0 and error is not None:
        raise error(where, _verb(argv), stderr)
    return result


def _verb(argv: list[str]) -> str:
    """A git or svn command's verb: ``clone``, ``fetch``, ``log``."""
    return argv[3] if argv[1:2] == ["--git-dir"] else argv[1]


def git_error(where: str, verb: str, stderr: str) -> InputError | InfraError:
    """A failed git command's error: bad input for a URL with no repository or refused credentials, else the
    server's or host's trouble."""
    line = _said(stderr, ("fatal:", "error:"), last=False)
    if any(sign in stderr for sign in GIT_INPUT_SIGNS):
        return InputError(f"{where}: git {verb} failed: {line}")
    return InfraError(f"{where}: git {verb} failed: {line}")


def svn_error(where: str, verb: str, stderr: str) -> InputError | InfraError:
    """A failed svn command's error: the server's trouble for a connection that failed, else bad input."""
    line = _said(stderr, ("svn: E",), last=True)
    if any(code in stderr for code in SVN_INFRA_CODES):
        return InfraError(f"{where}: svn {verb} failed: {line}")
    return InputError(f"{where}: svn {verb} failed: {line}")


def _said(stderr: str, starts: tuple[str, ...], last: bool) -> str:
    """The line of a program's errors that says why: the first (or ``last``) one starting with one of ``starts``
    (git's first fatal line names the cause, svn's last error code is the most precise), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(starts)] or lines[-1:] or ["no message"]
    return guest_line(said[-1] if last else said[0], SUBJECT_LIMIT)
