"""The search for the first bad commit (oscarvt_master.bisection) and the commits between two revisions
(oscarvt_master.revisions) of real git and SVN repositories made here (file:// and local paths only)."""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import subprocess
from pathlib import Path
from typing import Callable, Iterable

import pytest

from oscarvt.errors import INFRASTRUCTURE, PRODUCT, InfraError, InputError, guest_line
from oscarvt_master.bisection import MAX_RETRIES, Bisection, Failure, Outcome, Probe, Result, judge, same_failure
from oscarvt_master.revisions import AUTHOR_LIMIT, SUBJECT_LIMIT, git_commits, git_error, svn_commits, svn_error

RED = Failure("install-oscar", "OSCAR failed in step 6 - Build OSCAR client images: Died at "
                               "/opt/oscar/lib/OSCAR/ImageMgt.pm line 312.")
OTHER = Failure("boot-compute-nodes", "oscarnode1: the installer reported an error: no disk")


def bound(count: int) -> int:
    """The issue's bound on probes for ``count`` revisions in the range, the red one included."""
    return math.ceil(math.log2(count)) + 1


def revisions(count: int) -> list[str]:
    """The last green revision and ``count`` commits after it."""
    return [f"rev{index}" for index in range(count + 1)]


def bisect(count: int, first_bad: int, others: Iterable[int] = (), infrastructure: Iterable[int] = (),
           infrastructure_times: int = 1) -> Result:
    """Run a search over ``count`` commits whose first bad revision is at ``first_bad`` (0: the last green one
    already; count + 1: none); the indexes in ``others`` fail differently, those in ``infrastructure`` meet
    infrastructure trouble on their first ``infrastructure_times`` probes."""
    names = revisions(count)
    others, trouble = set(others), dict.fromkeys(infrastructure, infrastructure_times)
    search = Bisection(names[0], names[1:])
    while (revision := search.next_probe()) is not None:
        index = names.index(revision)
        if trouble.get(index):
            trouble[index] -= 1
            search.record(revision, Probe(Outcome.INFRASTRUCTURE, Failure("boot-headnode", "QEMU died")))
        elif index in others:
            search.record(revision, Probe(Outcome.OTHER, OTHER))
        else:
            search.record(revision, Probe(Outcome.BAD, RED) if index >= first_bad else Probe(Outcome.GOOD))
    result = search.result
    assert result is not None
    return result


def red_trusted(count: int) -> bool:
    """Whether the red build stands for its revision's probe (the module's rule: only with one commit)."""
    return count == 1


@pytest.mark.parametrize("count", range(1, 41))
def test_names_the_first_bad_commit_within_the_bound(count: int) -> None:
    names = revisions(count)
    for first_bad in range(1, count + 1):
        result = bisect(count, first_bad)
        assert (result.verdict, result.revision) == ("first bad commit", names[first_bad])
        assert result.probes <= bound(count)
        assert result.builds == result.probes
        assert result.line() == f"first bad commit: {names[first_bad]} ({result.probes} " \
                                f"probe{'' if result.probes == 1 else 's'})"


@pytest.mark.parametrize("count", range(1, 41))
def test_blames_no_commit_when_nothing_in_the_range_is_bad(count: int) -> None:
    names = revisions(count)
    predates = bisect(count, 0)  # the last green revision fails the same way now: the template or host changed
    assert (predates.verdict, predates.revision) == ("no bad commit", None)
    assert names[0] in predates.why and predates.probes <= bound(count)
    gone = bisect(count, count + 1)  # the red revision passes now: its failure did not come back
    assert gone.probes <= bound(count)
    if red_trusted(count):
        assert (gone.verdict, gone.revision) == ("first bad commit", names[count])
    else:
        assert (gone.verdict, gone.revision) == ("no bad commit", None)
        assert names[count] in gone.why


def check_not_misled(count: int, first_bad: int, others: set[int], result: Result) -> None:
    """A search with probes that failed differently names the right commit, no commit only when there is none,
    or is undecided between candidates that include the right one, all but the last set aside as failed differently."""
    names = revisions(count)
    truth = names[first_bad] if 1 <= first_bad <= count else None
    if red_trusted(count) and first_bad > count:
        truth = names[count]
    set_aside = {revision for revision, probe in result.set_aside}
    assert set_aside <= {names[index] for index in others}
    assert all(probe.outcome is Outcome.OTHER and probe.failure == OTHER for _, probe in result.set_aside)
    if result.verdict == "first bad commit":
        assert result.revision == truth
    elif result.verdict == "no bad commit":
        assert truth is None
    else:
        assert truth in result.candidates or (truth is None and result.or_none)
        assert set(result.candidates[:-1]) <= set_aside
        assert all(revision in result.why for revision in result.candidates)


@pytest.mark.parametrize("count", range(1, 8))
def test_probes_that_fail_differently_do_not_mislead_it_every_case(count: int) -> None:
    for first_bad in range(count + 2):
        for size in range(count + 2):
            for others in itertools.combinations(range(count + 1), size):
                result = bisect(count, first_bad, others)
                check_not_misled(count, first_bad, set(others), result)
                assert result.probes <= count + 1


def test_probes_that_fail_differently_do_not_mislead_it_in_long_ranges() -> None:
    pick = random.Random(28)
    for count in (8, 9, 16, 32, 33, 40):
        for first_bad in range(count + 2):
            for _ in range(20):
                others = set(pick.sample(range(count + 1), pick.randint(1, count // 2)))
                check_not_misled(count, first_bad, others, bisect(count, first_bad, others))


def test_one_probe_that_fails_differently_costs_a_probe_or_two_more_and_names_it_when_it_matters() -> None:
    names = revisions(8)
    plain = bisect(8, 5)
    beside = bisect(8, 5, others={4})  # the last good revision failed differently: the commit after it is unsure
    assert (beside.verdict, beside.candidates) == ("undecided", (names[4], names[5]))
    assert beside.set_aside == ((names[4], Probe(Outcome.OTHER, OTHER)),)
    assert "failed differently" in beside.why and beside.line().startswith("undecided: ")
    elsewhere = bisect(8, 5, others={2})
    assert (elsewhere.verdict, elsewhere.revision) == ("first bad commit", names[5])
    assert elsewhere.probes <= plain.probes + 2


@pytest.mark.parametrize("count", (1, 2, 8, 9, 32))
def test_infrastructure_trouble_is_retried_and_not_counted(count: int) -> None:
    names = revisions(count)
    for first_bad in range(1, count + 1):
        plain = bisect(count, first_bad)
        troubled = bisect(count, first_bad, infrastructure=range(count + 1))  # every revision's first probe
        assert (troubled.verdict, troubled.revision) == ("first bad commit", names[first_bad])
        assert troubled.probes == plain.probes <= bound(count)
        assert troubled.builds == 2 * plain.builds


def test_a_revision_that_cannot_be_built_is_set_aside_after_its_retries() -> None:
    names = revisions(8)
    search = Bisection(names[0], names[1:])
    stuck = search.next_probe()
    assert stuck is not None
    for _ in range(MAX_RETRIES):
        assert search.next_probe() == stuck
        search.record(stuck, Probe(Outcome.INFRASTRUCTURE))
    assert search.next_probe() != stuck and (search.probes, search.builds) == (0, MAX_RETRIES)
    result = bisect(8, names.index(stuck) + 1, infrastructure={names.index(stuck)}, infrastructure_times=MAX_RETRIES)
    assert (result.verdict, result.candidates) == ("undecided", (stuck, names[names.index(stuck) + 1]))
    assert "could not be built" in result.why


def test_record_refuses_what_the_search_does_not_need() -> None:
    names = revisions(4)
    search = Bisection(names[0], names[1:])
    with pytest.raises(ValueError, match="not a revision"):
        search.record("elsewhere", Probe(Outcome.GOOD))
    first = search.next_probe()
    assert first is not None
    search.record(first, Probe(Outcome.BAD, RED))
    with pytest.raises(ValueError, match="already judged"):
        search.record(first, Probe(Outcome.GOOD))
    assert search.result is None
    with pytest.raises(ValueError, match="no revision"):
        Bisection("green", [])
    with pytest.raises(ValueError, match="twice"):
        Bisection("green", ["a", "green"])


def test_same_failure_masks_what_varies_between_runs() -> None:
    console = ("oscarnode1: Kernel panic - not syncing [   {0}] "
               "(console /srv/worker/{1}/clusters/{2}/oscarnode1.console)")
    assert same_failure(Failure("wait-for-nodes", console.format("12.345678", "b1", 41)),
                        Failure("wait-for-nodes", console.format("3.5", "b2", 57)))
    timed = "oscarnode2: no progress for {0}s (last: {1}; pid {2} at 0x{3}, {4}, {5} MiB in {6} s, port {7})"
    assert same_failure(Failure("wait-for-nodes", timed.format(600, "imaging", 4242, "7ffe12ab", "2024-05-01 12:00:01",
                                                               3, 10, 40123)),
                        Failure("wait-for-nodes", timed.format(900, "imaging", 977, "55aa01", "2025-01-31 23:59:59",
                                                               12, 4, 51515)))
    moved = Failure(RED.phase, RED.message.replace("line 312", "line 340").replace("/opt/", "/tmp/tmpk2x9/"))
    assert same_failure(RED, moved)


def test_same_failure_tells_other_phases_steps_nodes_and_messages_apart() -> None:
    assert not same_failure(RED, Failure("wait-for-nodes", RED.message))
    assert not same_failure(RED, Failure(RED.phase, RED.message.replace("step 6", "step 7")))
    assert not same_failure(RED, Failure(RED.phase, RED.message.replace("ImageMgt.pm", "Database.pm")))
    assert not same_failure(RED, Failure(RED.phase, "OSCAR failed in step 6 - Build OSCAR client images: "
                                                    "mksiimage: no such distribution"))
    node = "oscarnode{0}: the installer reported an error: mount failed"
    assert not same_failure(Failure("wait-for-nodes", node.format(1)), Failure("wait-for-nodes", node.format(2)))


def test_judge_reads_a_probe_builds_verdict() -> None:
    assert judge(RED, None, None) == Probe(Outcome.GOOD)
    assert judge(RED, PRODUCT, RED) == Probe(Outcome.BAD, RED)
    assert judge(RED, PRODUCT, OTHER) == Probe(Outcome.OTHER, OTHER)
    assert judge(RED, "bad input", RED).outcome is Outcome.OTHER
    assert judge(RED, INFRASTRUCTURE, RED).outcome is Outcome.INFRASTRUCTURE


# Real repositories: nine commits each.

AUTHORS = [f"Author {number}" for number in range(1, 10)]
SUBJECTS = [f"Change {number}: touch file.txt" for number in range(1, 10)]
SUBJECTS[3] = "escape \x1b[2J\x07 in a subject"
SUBJECTS[6] = "a very long subject " + "x" * 1000
MESSAGE_BODY = "\n\nThe body's lines are not the subject."


def shell(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run([str(arg) for arg in argv], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60).stdout


@pytest.fixture
def git_repo(tmp_path: Path) -> tuple[Path, list[str]]:
    """A git repository of nine commits (authors and subjects above), and their hashes, oldest first."""
    origin = tmp_path / "origin"
    shell("git", "init", "--quiet", "--initial-branch=main", origin)
    hashes = []
    for number, (author, subject) in enumerate(zip(AUTHORS, SUBJECTS, strict=True), start=1):
        (origin / "file.txt").write_text(f"{number}\n")
        who = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"author{number}@example.org",
               "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.org"}
        shell("git", "add", "file.txt", cwd=origin)
        shell("git", "commit", "--quiet", "--cleanup=verbatim", "-m", subject + MESSAGE_BODY, cwd=origin, env=who)
        hashes.append(shell("git", "rev-parse", "HEAD", cwd=origin).strip())
    return origin, hashes


def svn_escaped(text: str) -> str:
    """``text`` as ``svn log --xml`` gives it: a control character as ``?\\NNN`` (its code in decimal)."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", lambda found: f"?\\{ord(found.group()):03d}", text)


def check_listed(listed: Iterable[tuple[str, str, str]], numbers: Iterable[int], names: list[str],
                 stored: Callable[[str], str] = str) -> None:
    """The commits listed are those of ``numbers`` (indexes into the fixtures' lists), oldest first, shown safely;
    ``stored``: what the repository gives of a subject."""
    assert [revision for revision, _, _ in listed] == [names[number] for number in numbers]
    for (_, author, subject), number in zip(listed, numbers, strict=True):
        assert author == guest_line(AUTHORS[number], AUTHOR_LIMIT)
        assert subject == guest_line(stored(SUBJECTS[number]), SUBJECT_LIMIT)
        assert subject.isprintable() and len(subject) <= SUBJECT_LIMIT + 3


def test_git_lists_the_commits_between_two_revisions(git_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    origin, hashes = git_repo
    mirror = tmp_path / "mirror"
    found = git_commits(f"file://{origin}", mirror, hashes[1], "main")
    assert (found.base, found.left_out, found.note()) == (hashes[1], 0, "")
    check_listed([(c.revision, c.author, c.subject) for c in found.commits], range(2, 9), hashes)
    assert [c.email for c in found.commits] == [f"author{number + 1}@example.org" for number in range(2, 9)]
    assert "\x1b" not in found.commits[1].subject and len(found.commits[4].subject) == SUBJECT_LIMIT + 3

    (origin / "file.txt").write_text("10\n")
    shell("git", "commit", "--quiet", "-am", "Change 10", cwd=origin)
    newest = shell("git", "rev-parse", "HEAD", cwd=origin).strip()
    again = git_commits(str(origin), mirror, hashes[7], "main")  # the mirror is fetched: it has the new commit
    assert [c.revision for c in again.commits] == [hashes[8], newest]

    cut = git_commits(str(origin), mirror, hashes[0], hashes[8], limit=3, fetch=False)
    assert [c.revision for c in cut.commits] == hashes[6:9]
    assert (cut.base, cut.left_out) == (hashes[5], 5) and "5 older commits" in cut.note()
    assert git_commits(str(origin), mirror, hashes[4], hashes[4], fetch=False).commits == ()


def test_git_errors_are_one_clear_line(git_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    origin, hashes = git_repo
    mirror = tmp_path / "mirror"
    with pytest.raises(InputError, match="no commit 'no-such-branch'"):
        git_commits(str(origin), mirror, "no-such-branch", hashes[8])
    with pytest.raises(InputError, match="is not an ancestor of"):
        git_commits(str(origin), mirror, hashes[8], hashes[2], fetch=False)
    with pytest.raises(InputError, match="must be one line of text not starting with '-'"):
        git_commits(str(origin), mirror, "--output=/tmp/x", hashes[2], fetch=False)
    with pytest.raises(InputError, match="git clone failed: fatal: .*nowhere"):
        git_commits(f"file://{tmp_path}/nowhere", tmp_path / "other-mirror", hashes[0], hashes[1])
    with pytest.raises(InputError, match="git clone failed: fatal: .*nowhere"):
        git_commits(f"{tmp_path}/nowhere", tmp_path / "other-mirror", hashes[0], hashes[1])
    with pytest.raises(InputError, match="transport 'ext' not allowed"):
        git_commits("ext::sh -c true", tmp_path / "ext-mirror", hashes[0], hashes[1])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("")
    with pytest.raises(InputError, match="not a git mirror"):
        git_commits(str(origin), tmp_path / "full", hashes[0], hashes[1])


def test_a_server_that_does_not_answer_is_infrastructure_a_missing_repository_bad_input() -> None:
    refused = "fatal: unable to access 'https://git.example.org/oscar.git/': Failed to connect to git.example.org"
    assert isinstance(git_error("https://git.example.org/oscar.git", "fetch", refused), InfraError)
    missing = "remote: Repository not found.\nfatal: repository 'https://git.example.org/x.git/' not found"
    assert isinstance(git_error("https://git.example.org/x.git", "clone", missing), InputError)
    down = ("svn: E170013: Unable to connect to a repository at URL 'svn://svn.example.org/oscar'\n"
            "svn: E000111: Can't connect to host 'svn.example.org': Connection refused")
    error = svn_error("svn://svn.example.org/oscar", "log", down)
    assert isinstance(error, InfraError) and "E000111" in str(error) and "\n" not in str(error)
    assert isinstance(svn_error("svn://svn.example.org/oscar", "log", "svn: E160006: No such revision 99"), InputError)


@pytest.fixture
def svn_repo(tmp_path: Path) -> tuple[str, list[str]]:
    """An SVN repository of nine commits (authors and subjects above; the fifth changes only branches/, not
    trunk), the URL of its trunk and the revisions, oldest first."""
    repository, tree, work = tmp_path / "svnrepo", tmp_path / "tree", tmp_path / "work"
    shell("svnadmin", "create", repository)
    (tree / "trunk").mkdir(parents=True)
    (tree / "branches").mkdir()
    (tree / "trunk" / "file.txt").write_text("1\n")
    url = f"file://{repository}"
    shell("svn", "import", "--quiet", "--username", AUTHORS[0], "-m", SUBJECTS[0] + MESSAGE_BODY, tree, url)
    shell("svn", "checkout", "--quiet", url, work)
    for number in range(1, 9):
        changed = work / ("branches/note.txt" if number == 4 else "trunk/file.txt")
        new = not changed.exists()
        changed.write_text(f"{number + 1}\n")
        if new:
            shell("svn", "add", "--quiet", changed)
        shell("svn", "commit", "--quiet", "--username", AUTHORS[number], "-m", SUBJECTS[number] + MESSAGE_BODY, work)
    return f"{url}/trunk", [str(number) for number in range(1, 10)]


def test_svn_lists_the_revisions_that_changed_the_path(svn_repo: tuple[str, list[str]]) -> None:
    trunk, numbers = svn_repo
    found = svn_commits(trunk, "r2", numbers[8])
    on_trunk = [number for number in range(2, 9) if number != 4]  # the fifth commit changed branches/ only
    assert (found.base, found.left_out) == ("2", 0)
    check_listed([(c.revision, c.author, c.subject) for c in found.commits], on_trunk, numbers, svn_escaped)
    assert all(c.email is None for c in found.commits)
    cut = svn_commits(trunk, "0", numbers[8], limit=4)
    assert [c.revision for c in cut.commits] == [numbers[n] for n in on_trunk[-4:]]
    assert (cut.base, cut.left_out) == (numbers[on_trunk[-5]], 4)


def test_svn_errors_are_one_clear_line(svn_repo: tuple[str, list[str]], tmp_path: Path) -> None:
    trunk, numbers = svn_repo
    with pytest.raises(InputError, match="E160006: No such revision 99"):
        svn_commits(trunk, numbers[2], "99")
    with pytest.raises(InputError, match="not older than"):
        svn_commits(trunk, numbers[8], numbers[2])
    with pytest.raises(InputError, match="is not an SVN revision number"):
        svn_commits(trunk, "HEAD~1", numbers[2])
    with pytest.raises(InputError, match="E180001: Unable to open repository"):
        svn_commits(f"file://{tmp_path}/nowhere", numbers[0], numbers[2])
    with pytest.raises(InputError, match="File not found"):
        svn_commits(trunk.replace("/trunk", "/tags"), numbers[0], numbers[2])
