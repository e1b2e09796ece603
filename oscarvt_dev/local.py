"""A master and a worker on this host: create, start and stop them, talk to the REST API, and
make the local git repository they build from.

Used by ``make demo``, the tests and ``bench/``; a real deployment uses master.cfg with its
own settings and ``workers/setup-worker.sh`` on each hypervisor host.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

import yaml

from oscarvt.errors import OscarvtError
from oscarvt.tools import run_tool
from oscarvt.waiting import wait_for

BIN = Path(sys.executable).parent
MASTER_CFG = Path(__file__).parent.parent / "master.cfg"
STARTUP = 300  # seconds for a buildbot command that creates or starts a master or worker


def create_master(folder: Path, settings: dict[str, Any], secrets: dict[str, str]) -> None:
    """A master folder: Buildbot's files, our master.cfg, the settings and the secret files (0600);
    for a database other than SQLite (PostgreSQL), Buildbot's tables in it (``buildbot upgrade-master``)."""
    run_tool([str(BIN / "buildbot"), "create-master", "-r", str(folder)], "buildbot create-master", timeout=STARTUP)
    shutil.copy(MASTER_CFG, folder / "master.cfg")
    (folder / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    secrets_dir = folder / str(settings.get("secrets_dir", "secrets"))
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    for name, text in secrets.items():
        (secrets_dir / name).write_text(text)
        (secrets_dir / name).chmod(0o600)
    if not str(settings.get("db_url", "sqlite:")).startswith("sqlite:"):  # create-master made state.sqlite only
        run_tool([str(BIN / "buildbot"), "upgrade-master", str(folder)], "buildbot upgrade-master",
                 hint=f"see {folder / 'settings.yaml'}'s db_url", timeout=STARTUP)


def create_worker(folder: Path, name: str, master_port: int, password: str) -> None:
    run_tool([str(BIN / "buildbot-worker"), "create-worker", "--umask=0o077", str(folder),
              f"127.0.0.1:{master_port}", name, password], "buildbot-worker create-worker", timeout=STARTUP)


def start_master(folder: Path) -> int:
    """Start the master in the background; its PID."""
    run_tool([str(BIN / "buildbot"), "start", str(folder)], "buildbot start", hint=f"see {folder / 'twistd.log'}",
             timeout=STARTUP)
    return int((folder / "twistd.pid").read_text())


def start_worker(folder: Path) -> int:
    """Start the worker in the background (after reaping what its interrupted builds left); its PID."""
    run_tool([str(BIN / "oscarvt"), "reap", "--under", str(folder), "--stop-drivers"], "oscarvt reap",
             timeout=STARTUP)
    run_tool([str(BIN / "buildbot-worker"), "start", str(folder)], "buildbot-worker start",
             hint=f"see {folder / 'twistd.log'}", timeout=STARTUP)
    return int((folder / "twistd.pid").read_text())


def wait_logged(folder: Path, text: str, times: int, timeout: float = 60) -> None:
    """Wait until the master's log shows ``text`` at least ``times`` times (e.g. a poller's
    second poll: the first one only records where the repository is)."""
    log = folder / "twistd.log"
    wait_for(lambda: True if log.read_text(errors="replace").count(text) >= times else None,
             timeout=timeout, what=f"the master to log {text!r} {times} times", interval=0.5)


def git_repo(source: Path, repo: Path) -> Path:
    """A git repository (branch main) whose first commit is a copy of ``source``."""
    shutil.copytree(source, repo)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", f"import {source.name}"]):
        git(repo, *args)
    return repo


def svn_repo(source: Path, root: Path) -> tuple[str, Path]:
    """An SVN repository in ``root/svn`` whose r1 imports ``source`` as trunk, and a working copy of trunk in
    ``root/svn-checkout``: trunk's URL and the working copy."""
    url = f"file://{root}/svn/trunk"
    run_tool(["svnadmin", "create", str(root / "svn")], "svnadmin create")
    run_tool(["svn", "import", "-q", "-m", f"import {source.name}", str(source), url], "svn import")
    run_tool(["svn", "checkout", "-q", url, str(root / "svn-checkout")], "svn checkout")
    return url, root / "svn-checkout"


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as oscarvt's author; return its output."""
    return run_tool(["git", "-C", str(repo), "-c", "user.name=oscarvt", "-c", "user.email=oscarvt@example.org",
                     *args], f"git {args[0]}")


def stop(pid: int, timeout: float = 20) -> None:
    """SIGTERM a process we started, SIGKILL if it is still there after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: None if Path(f"/proc/{pid}").exists() else True, timeout=timeout, what=f"PID {pid} to exit")
    except OscarvtError:
        os.kill(pid, signal.SIGKILL)


class Rest:
    """The master's REST API (reads anonymously; control calls as a user if given).

    Every answer is read to its end: a client that leaves before the end of an answer can
    wedge Twisted's epoll reactor, and so the master, for every later connection
    (twisted/twisted#11625)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/"

    def get(self, path: str) -> Any:
        """GET ``api/v2/PATH`` as JSON; an answer cut short (a busy master's connection dropped) is asked again."""
        for attempt in range(3):
            try:
                with urllib.request.urlopen(f"{self.url}api/v2/{path}", timeout=30) as reply:
                    return json.load(reply)
            except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError):
                if attempt == 2:
                    raise
                time.sleep(1)

    def builds(self, builder: str) -> list[dict[str, Any]]:
        return list(self.get(f"builders/{builder}/builds")["builds"])

    def steps(self, build: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.get(f"builds/{build['buildid']}/steps")["steps"])

    def step_logs(self, build: dict[str, Any], name: str | None = None) -> list[dict[str, Any]]:
        """Every step log of ``build`` (or each step's log called ``name``), with the step's name
        (``step``) and the log's text (``content``)."""
        found = []
        for step in self.steps(build):
            for log in self.get(f"steps/{step['stepid']}/logs")["logs"]:
                if name is not None and log["name"] != name:
                    continue
                chunks = self.get(f"logs/{log['logid']}/contents")["logchunks"]
                found.append({**log, "step": step["name"], "content": "".join(c["content"] for c in chunks)})
        return found

    def worker_connected(self) -> bool | None:
        return True if all(w["connected_to"] for w in self.get("workers")["workers"]) else None

    def rpc(self, path: str, method: str, params: dict[str, Any],
            user: tuple[str, str] | None = None) -> tuple[int, Any]:
        """A JSON-RPC control call (force, stop): its HTTP status and reply."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        if user is not None:
            login = urllib.request.Request(f"{self.url}auth/login")
            login.add_header("Authorization", "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode())
            with opener.open(login, timeout=30) as reply:
                reply.read()  # to its end (see the class's note)
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1, "params": params}).encode()
        request = urllib.request.Request(f"{self.url}api/v2/{path}", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with opener.open(request, timeout=30) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
