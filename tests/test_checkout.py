"""checkout-oscar's URL and revision, without a VM: never an option to git or svn, and credentials
in a URL masked in everything the driver writes (output, events, state, logs, mail).

The commands checkout-oscar sends to the headnode run here on the host, against local git and
svn repositories (no network).
"""

from __future__ import annotations

import dataclasses
import email
import json
import subprocess
from pathlib import Path

import pytest
from conftest import oscarvt

from oscarvt.cluster import ClusterDir
from oscarvt.masking import mask_credentials
from oscarvt.phases.checkout import checkout_command, guess_vcs
from oscarvt.state import Checkout, ClusterState, Logs, PhaseRecord, Vm

SECRET = "s3cret-pw"


@pytest.mark.parametrize("text, masked", [
    ("https://user:s3cret@host/oscar.git", "https://user:***@host/oscar.git"),
    ("https://ghp_TOKEN123@github.com/oscar-cluster/oscar.git", "https://***@github.com/oscar-cluster/oscar.git"),
    ("svn+ssh://user:pw@svn.example.org/repos/oscar", "svn+ssh://user:***@svn.example.org/repos/oscar"),
    ("svn+ssh://user@svn.example.org/repos/oscar", "svn+ssh://user@svn.example.org/repos/oscar"),  # a login name
    ("ssh://git@host:2222/oscar.git", "ssh://git@host:2222/oscar.git"),
    ("https://user:pw@host:8443/r.git", "https://user:***@host:8443/r.git"),
    ("https://user:pw@[2001:db8::1]:8443/r.git", "https://user:***@[2001:db8::1]:8443/r.git"),
    ("http://user:p@ss:w@rd@host/r", "http://user:***@host/r"),  # an unescaped '@' in the password
    ("svn://user:pw@host", "svn://user:***@host"),
    ("git clone -- 'https://u:pw@h/r' /opt/oscar", "git clone -- 'https://u:***@h/r' /opt/oscar"),
    ("fatal: unable to access 'https://u:pw@h/r/': Could not resolve host: h",
     "fatal: unable to access 'https://u:***@h/r/': Could not resolve host: h"),
    ('{"message": "https://u:pw@h/r failed", "vm": "a@b"}', '{"message": "https://u:***@h/r failed", "vm": "a@b"}'),
    ("https://host/path@v1.0 and mail to dev@example.org", "https://host/path@v1.0 and mail to dev@example.org"),
    ("git@github.com:oscar-cluster/oscar.git", "git@github.com:oscar-cluster/oscar.git"),
    ("/opt/oscar (0c35a10c) is in the headnode's /opt/oscar", "/opt/oscar (0c35a10c) is in the headnode's /opt/oscar"),
    ("'-https://user:pw@h/r'", "'-https://user:***@h/r'"),
    ("x-svn+ssh://TOKEN@h/r", "x-svn+ssh://***@h/r"),  # not an SSH scheme: the name may be a token
    ("://pw@h", "://***@h"),
])
def test_credentials_in_urls_are_masked_and_nothing_else(text, masked):
    assert mask_credentials(text) == masked
    assert mask_credentials(masked) == masked


def test_masking_a_long_hostile_line_takes_no_time():
    for line in ("a." * 500_000, "x://" + "a:" * 500_000, "https://" + "@" * 500_000):
        mask_credentials(line)  # linear: pytest's timeout would catch a quadratic one


@pytest.mark.parametrize("url, vcs", [
    ("svn://10.0.2.2/oscar/trunk", "svn"), ("svn+ssh://u@host/oscar", "svn"), ("SVN://host/r", "svn"),
    ("git://10.0.2.2/oscar", "git"), ("https://github.com/oscar-cluster/oscar.git", "git"), ("/srv/oscar", "git"),
    ("https://svn.example.org/oscar/trunk", "git"),  # SVN over HTTP needs --vcs svn
])
def test_guess_vcs(url, vcs):
    assert guess_vcs(url) == vcs


def test_the_commands_quote_every_value_and_end_options_before_it():
    assert checkout_command("git", "https://h/o p.git", "/opt/oscar", "v1; rm") == (
        "git clone --quiet -- 'https://h/o p.git' /opt/oscar && git -C /opt/oscar checkout --quiet 'v1; rm' -- "
        "&& git -C /opt/oscar rev-parse HEAD")
    assert checkout_command("svn", "svn://h/$(id)", "/opt/oscar", "{2024-01-01}") == (
        "svn checkout --quiet --non-interactive -r '{2024-01-01}' -- 'svn://h/$(id)' /opt/oscar && "
        "svnversion -- /opt/oscar")


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` run as the headnode runs it: by a shell, output and errors merged."""
    return subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def git_repo(tmp_path) -> tuple[Path, list[str]]:
    """A git repository with a file README and two commits (their hashes, oldest first)."""
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    hashes = []
    for text in ("one\n", "two\n"):
        (repo / "README").write_text(text)
        subprocess.run([*git, "add", "README"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", text], check=True)
        hashes.append(subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                                     text=True).stdout.strip())
    return repo, hashes


def test_git_checks_out_the_revision_and_takes_it_for_nothing_else(git_repo, tmp_path):
    repo, hashes = git_repo
    done = sh(checkout_command("git", str(repo), str(tmp_path / "a"), hashes[0]), tmp_path)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, hashes[0])
    assert (tmp_path / "a" / "README").read_text() == "one\n"
    done = sh(checkout_command("git", str(repo), str(tmp_path / "b"), "main"), tmp_path)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, hashes[1])
    # a revision that names a file is no revision: without the '--' git would restore the file and pass
    done = sh(checkout_command("git", str(repo), str(tmp_path / "c"), "README"), tmp_path)
    assert done.returncode != 0 and "invalid reference: README" in done.stderr


def test_a_url_that_looks_like_an_option_is_only_a_repository_name(tmp_path):
    done = sh(checkout_command("git", "--upload-pack=touch pwned", str(tmp_path / "d"), None), tmp_path)
    assert done.returncode != 0 and "repository '--upload-pack=touch pwned' does not exist" in done.stderr
    done = sh(checkout_command("svn", "--config-option=x:y:z=touch pwned", str(tmp_path / "e"), None), tmp_path)
    assert done.returncode != 0 and "does not appear to be a URL" in done.stderr
    assert not (tmp_path / "pwned").exists()


def test_svn_checks_out_the_revision(tmp_path):
    subprocess.run(["svnadmin", "create", str(tmp_path / "svnrepo")], check=True)
    url = f"file://{tmp_path / 'svnrepo'}"
    done = sh(checkout_command("svn", url, str(tmp_path / "w"), "0"), tmp_path)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "0")


@pytest.mark.parametrize("flags, line", [
    (["--url=--upload-pack=touch /tmp/pwned"],
     "--url must not start with '-' (git and svn would take it for an option): '--upload-pack=touch /tmp/pwned'"),
    (["--url", "https://h/r.git", "--revision=--orphan=x"],
     "--revision must not start with '-' (git and svn would take it for an option): '--orphan=x'"),
    (["--url=-https://user:s3cret@h/r"],
     "--url must not start with '-' (git and svn would take it for an option): '-https://user:***@h/r'"),
    (["--url", "https://h/r.git\nx"], "--url must be one line of printable text, not 'https://h/r.git\\nx'"),
    (["--url", ""], "--url must be one line of printable text, not ''"),
])
@pytest.mark.parametrize("verb", ["checkout-oscar", "run"])
def test_a_url_or_revision_that_is_an_option_is_bad_input(tmp_path, verb, flags, line):
    spec = tmp_path / "spec.yaml"
    spec.write_text("template: /nonexistent.qcow2\nssh: {password: pw}\n")
    before = sorted(tmp_path.iterdir())
    result = oscarvt(verb, "--cluster", tmp_path / "c", *(["--spec", spec] if verb == "run" else []), *flags)
    assert (result.returncode, result.output) == (2, f"FAIL: {verb}: bad input: {line}\n")
    assert sorted(tmp_path.iterdir()) == before  # nothing made, nothing started


def cluster_from_an_older_driver(tmp_path: Path) -> ClusterDir:
    """A failed cluster whose state.json holds a credentialed URL as it is (as an older oscarvt wrote it)."""
    url = f"https://oscar:{SECRET}@git.example.org/oscar.git"
    cluster = ClusterDir(tmp_path / "c")
    cluster.path.mkdir()
    state = ClusterState(cluster_id=7, spec={"template": "/x.qcow2", "ssh": {"password": "pw"}}, vms={
        "headnode": Vm("headnode", 0, ip="192.168.77.1", mac="52:54:00:12:34:01")},
        checkout=Checkout(source=url, revision="0c35a10c", dir="/opt/oscar"),
        phases=[PhaseRecord("checkout-oscar", start=1.0, end=2.0, result="failed", blame="infrastructure",
                            seconds=1.0, message=f"git checkout of {url} failed on the headnode: "
                                                 f"fatal: unable to access '{url}/': Could not resolve host")])
    cluster.save(state)
    return cluster


def test_grab_logs_send_logs_and_status_mask_a_credentialed_url(tmp_path, smtp_sink, monkeypatch):
    cluster = cluster_from_an_older_driver(tmp_path)
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("OSCARVT_EVENTS", str(events))
    logs = tmp_path / "logs"
    written = []
    for args in (["grab-logs", "--dest", logs], ["send-logs", "--to", "dev@example.org", "--smtp", smtp_sink.address],
                 ["status"], ["status", "--json"]):
        result = oscarvt(args[0], "--cluster", cluster.path, *args[1:])
        assert result.returncode == 0, result.output
        written += [result.output, events.read_text()]
    assert "https://oscar:***@git.example.org/oscar.git failed on the headnode" in written[-2]  # status --json
    written += [(logs / name).read_text() for name in ("phases.json", "summary.txt")]
    assert json.loads((logs / "phases.json").read_text())["checkout"]["source"] == (
        "https://oscar:***@git.example.org/oscar.git")
    mail = email.message_from_bytes(smtp_sink.received[0].as_bytes())
    written += [mail["Subject"], *(part.get_payload(decode=True).decode(errors="replace")
                                   for part in mail.walk() if part.get_content_type() == "text/plain")]
    assert "OSCAR: https://oscar:***@git.example.org/oscar.git (0c35a10c)" in written[-1]
    assert not [text for text in written if SECRET in text]


def test_a_phase_record_keeps_no_credential(tmp_path):
    cluster = cluster_from_an_older_driver(tmp_path)
    state = cluster.load()
    cluster.save(dataclasses.replace(state, logs=Logs(dir="/x", tarball="/x.tar.gz")))
    with pytest.raises(RuntimeError), cluster.phase("keep"):
        raise RuntimeError(f"svn: E170013: Unable to connect to svn+ssh://oscar:{SECRET}@svn.example.org/oscar")
    assert cluster.load().phases[-1].message == (
        "svn: E170013: Unable to connect to svn+ssh://oscar:***@svn.example.org/oscar")
