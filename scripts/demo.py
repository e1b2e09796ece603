"""make demo: oscarvt as its users run it, on this machine.

Builds (or reuses) the headnode template, makes a local git repository of examples/oscar-mini,
starts an SMTP sink (aiosmtpd, a Maildir), a Buildbot master (SQLite) with the waterfall at
http://127.0.0.1:8010 and a worker, commits to the repository so the poller starts a build,
and follows that build step by step. Everything lives in .demo/ and stays up for a look;
``make demo-stop`` (this script with ``stop``) stops what it started and destroys leftover clusters.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oscarvt import log  # noqa: E402
from oscarvt.errors import InfraError, OscarvtError, ProductError  # noqa: E402
from oscarvt.image import build_template  # noqa: E402
from oscarvt.waiting import wait_for  # noqa: E402
from oscarvt_dev import local  # noqa: E402
from oscarvt_master.secret_files import hashed_line  # noqa: E402

DEMO = ROOT / ".demo"
PIDS = DEMO / "pids.json"
URL = "http://127.0.0.1:8010/"
BUILDER = "debian12-amd64-2nodes-cdrom"
SMTP_PORT, WORKER_PORT = 8025, 9989


def start() -> str:
    stop()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    log.progress("headnode template (built once, about a minute; then from the cache)")
    template, _ = build_template()
    repo = local.git_repo(ROOT / "examples" / "oscar-mini", DEMO / "repo")
    log.progress(f"git repository of the example suite: {repo}")
    pids: dict[str, int] = {}
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{SMTP_PORT}",
                             "-c", "aiosmtpd.handlers.Mailbox", str(DEMO / "mail")],
                            stdout=subprocess.DEVNULL, stderr=(DEMO / "smtp.log").open("w"), start_new_session=True)
    pids["smtp"] = sink.pid
    PIDS.write_text(json.dumps(pids))
    admin_password, worker_password = secrets.token_urlsafe(12), secrets.token_urlsafe(16)
    spec = {**template.spec_data(), "nodes": {"memory": 384, "disk": "1G"}}
    settings = {
        "title": "oscarvt demo", "url": URL, "www_port": 8010,
        "worker_port": WORKER_PORT, "oscarvt": str(local.BIN / "oscarvt"), "admins": ["admin"],
        "repositories": [{"name": "oscar-mini", "vcs": "git", "url": str(repo), "branch": "main", "poll_interval": 5}],
        "workers": [{"name": "localhost", "max_clusters": 1}],
        "builders": [{"name": BUILDER, "repository": "oscar-mini", "workers": ["localhost"], "nodes": 2,
                      "boot": "cdrom", "spec": spec}],
        "mail": {"relay": f"127.0.0.1:{SMTP_PORT}", "from": "oscarvt@example.org", "to": ["oscar-devel@example.org"],
                 "mode": ["all"]},
    }
    local.create_master(DEMO / "master", settings, {"worker-localhost": worker_password,
                                                    "www-users": hashed_line("admin", admin_password) + "\n"})
    password_file = DEMO / "admin-password"
    password_file.touch(mode=0o600)
    password_file.write_text(admin_password + "\n")
    pids["master"] = local.start_master(DEMO / "master")
    PIDS.write_text(json.dumps(pids))
    log.progress(f"master up: waterfall at {URL}#/waterfall (user admin, password in {password_file})")
    local.create_worker(DEMO / "worker", "localhost", WORKER_PORT, worker_password)
    pids["worker"] = local.start_worker(DEMO / "worker")
    PIDS.write_text(json.dumps(pids))
    rest = local.Rest(URL)
    wait_for(rest.worker_connected, timeout=60, what="the worker to connect", interval=1)
    log.progress("worker connected; waiting for the poller's first look at the repository")
    local.wait_logged(DEMO / "master", "gitpoller: processing changes", times=2)
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\nA revision made by `make demo`.\n")
    local.git(repo, "commit", "-q", "-am", "demo: a new revision to test")
    log.progress("committed a new revision; the poller starts a build within seconds")
    build = wait_for(lambda: (rest.builds(BUILDER) or [None])[0], timeout=120, what="the build to start", interval=1)
    log.progress(f"build {build['number']} started: {URL}#/builders/{build['builderid']}/builds/{build['number']}")
    done: set[str] = set()
    while True:
        build = rest.builds(BUILDER)[0]
        for step in rest.steps(build):
            if step["complete"] and step["name"] not in done:
                done.add(step["name"])
                log.progress(f"step {step['name']}: {step['state_string']}")
        if build["complete"]:
            break
        time.sleep(2)
    mails = len(list((DEMO / "mail" / "new").glob("*"))) if (DEMO / "mail" / "new").is_dir() else 0
    log.progress(f"mail: {mails} message(s) in the Maildir {DEMO / 'mail'}")
    log.progress(f"the master and worker stay up for a look at {URL}; 'make demo-stop' stops them")
    if build["results"] != 0:
        kind = ProductError if build["results"] == 2 else InfraError  # FAILURE: the suite's; else the host's
        raise kind(f"build {build['number']} failed: {build['state_string']} (see {URL})")
    return f"build {build['number']} passed every phase on a virtual cluster; waterfall at {URL}#/waterfall"


def stop() -> str:
    """Stop the demo's processes (by the PIDs it recorded) and destroy any cluster left."""
    stopped = 0
    if PIDS.is_file():
        for name, pid in reversed(list(json.loads(PIDS.read_text()).items())):
            cmdline = Path(f"/proc/{pid}/cmdline")
            marker = b"aiosmtpd" if name == "smtp" else b"buildbot"  # not a reused PID
            if cmdline.exists() and marker in cmdline.read_bytes():
                local.stop(pid)
                stopped += 1
        PIDS.unlink()
    for cluster in sorted(DEMO.glob("worker/*/cluster")):
        subprocess.run([str(local.BIN / "oscarvt"), "destroy", "--cluster", str(cluster)], capture_output=True)
    return f"{stopped} processes stopped, clusters destroyed"


def main() -> int:
    verb = "demo-stop" if sys.argv[1:] == ["stop"] else "demo"
    try:
        message = stop() if verb == "demo-stop" else start()
    except OscarvtError as exc:
        log.verdict(verb, str(exc), exc.blame)
        return exc.exit_status
    log.verdict(verb, message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
