"""The reproduce command's parts run by a real shell against real git and SVN repositories: the checkout
gets the build's revision, the spec arrives as used (inline or over HTTP), and the spec kept on the
master never goes through a link a worker's upload left. The whole command, from a red build's mail,
is run in tests/test_buildbot.py."""

from __future__ import annotations

import base64
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oscarvt_dev import local
from oscarvt_master.reproduce import CHECKOUT, SPEC, checkout_command, reproduce_command, spec_command, write_spec

SPEC_TEXT = "template: {suite: bookworm}\nnodes: {count: 2, boot: cdrom}\n# it's a 'quoted' $HOME `spec`\n"


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120)


def git_history(tmp_path: Path) -> tuple[Path, list[str]]:
    """A git repository with three commits of ``file``; its path and the commits, oldest first."""
    repo = tmp_path / "repo with space"
    repo.mkdir()
    local.git(repo, "init", "-q", "-b", "main")
    commits = []
    for number in range(1, 4):
        (repo / "file").write_text(f"version {number}\n")
        local.git(repo, "add", "file")
        local.git(repo, "commit", "-q", "-m", f"commit {number}")
        commits.append(subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                      text=True, check=True).stdout.strip())
    return repo, commits


def test_the_git_checkout_gets_the_builds_revision_not_the_newest(tmp_path):
    repo, commits = git_history(tmp_path)
    person = tmp_path / "person"
    person.mkdir()
    ran = shell(checkout_command("git", str(repo), commits[1]), person)
    assert ran.returncode == 0, ran.stderr
    assert (person / CHECKOUT / "file").read_text() == "version 2\n"


def test_the_svn_checkout_gets_the_builds_revision(tmp_path):
    subprocess.run(["svnadmin", "create", str(tmp_path / "svn")], check=True)
    url = f"file://{tmp_path}/svn"
    work = tmp_path / "work"
    subprocess.run(["svn", "checkout", "-q", url, str(work)], check=True)
    for number in range(1, 4):
        (work / "file").write_text(f"version {number}\n")
        if number == 1:
            subprocess.run(["svn", "add", "-q", str(work / "file")], check=True)
        subprocess.run(["svn", "commit", "-q", "-m", f"commit {number}", str(work)], check=True)
    person = tmp_path / "person"
    person.mkdir()
    ran = shell(checkout_command("svn", url, "2"), person)
    assert ran.returncode == 0, ran.stderr
    assert (person / CHECKOUT / "file").read_text() == "version 2\n"


def test_an_inline_spec_arrives_as_used_from_one_line(tmp_path):
    command = spec_command(SPEC_TEXT, None)
    assert "\n" not in command and base64.b64encode(SPEC_TEXT.encode()).decode() in command
    ran = shell(command, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / SPEC).read_text() == SPEC_TEXT


def test_a_spec_kept_on_the_master_is_fetched_over_http(tmp_path):
    served = tmp_path / "logs"
    write_spec(served, SPEC_TEXT)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        person = tmp_path / "person"
        person.mkdir()
        ran = shell(spec_command(SPEC_TEXT, f"http://127.0.0.1:{server.server_address[1]}/{SPEC}"), person)
        assert ran.returncode == 0, ran.stderr
        assert (person / SPEC).read_text() == SPEC_TEXT
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_kept_spec_replaces_a_link_the_upload_left_without_following_it(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not ours to change\n")
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / SPEC).symlink_to(elsewhere)
    write_spec(folder, SPEC_TEXT)
    assert not (folder / SPEC).is_symlink() and (folder / SPEC).read_text() == SPEC_TEXT
    assert elsewhere.read_text() == "not ours to change\n"


@pytest.mark.parametrize("revision", ["1234abcd", "x; touch owned", "$(touch owned)"])
def test_a_revision_or_url_is_one_word_to_the_shell(tmp_path, revision):
    command = reproduce_command("git", str(tmp_path / "no such repo; touch owned"), revision, SPEC_TEXT, None, "b1-3")
    shell(command, tmp_path)  # the clone fails: nothing after it runs, and nothing is injected
    assert not (tmp_path / "owned").exists()
    assert command.endswith("oscarvt run --cluster b1-3 --spec spec.yaml --source oscar --keep")
