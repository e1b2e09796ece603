"""The master on PostgreSQL for real: Debian's PostgreSQL server, started here in a temporary data
folder (as the postgres user when the tests run as root: it refuses root), listening on 127.0.0.1
with password logins; the master's db_url names the database and its password is the secret file
db-password. A real worker runs a one-node build of the example suite on a virtual cluster: it
passes, each cluster test from OSCAR's JUnit report is a test result of the build, the builder's
badge says success, and all of it is in PostgreSQL's tables."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import psycopg2
import pytest
from conftest import oscarvt, qemu_pids_of, template_spec_data
from lxml import etree
from test_master_boundaries import ADMIN, Running

from oscarvt.errors import OscarvtError
from oscarvt.image import build_template
from oscarvt.network import free_tcp_port
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.secret_files import hashed_line

ROOT = Path(__file__).parent.parent
USER, DATABASE = "buildbot", "oscarvt"
PASSWORD = "pg-Pa55:w/rd@with%odd&chars"  # a URL would need quoting: the driver gets it apart from the URL


@dataclass
class Postgres:
    """A PostgreSQL server of our own: its PID, port and folder."""

    pid: int
    port: int
    folder: Path

    def connect(self, password: str = PASSWORD, database: str = DATABASE) -> Any:
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=password, dbname=database,
                                connect_timeout=10)


def server_binaries() -> Path:
    """The newest installed server's bin folder (Debian's postgresql-NN)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    assert found, "Debian's postgresql is not installed (make deps installs it)"
    return found[-1].parent


def as_server_user(folder: Path) -> list[str]:
    """The command prefix that runs the server as a user it accepts: postgres when we are root."""
    if os.geteuid() != 0:
        return []
    account = pwd.getpwnam("postgres")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)
    return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", "--"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """Debian's PostgreSQL in a temporary folder (under /tmp, where the postgres user reaches it),
    password logins only, on 127.0.0.1; stopped by its PID (fast shutdown, then SIGKILL)."""
    binaries = server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="oscarvt-pg."))
    (folder / "pwfile").write_text(PASSWORD + "\n")
    (folder / "socket").mkdir()
    prefix = as_server_user(folder)
    server = None
    try:
        subprocess.run([*prefix, str(binaries / "initdb"), "-D", str(folder / "data"), "-U", USER,
                        f"--pwfile={folder / 'pwfile'}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        (folder / "pwfile").unlink()
        port = free_tcp_port()
        with open(folder / "server.log", "w") as log:
            server = subprocess.Popen([*prefix, str(binaries / "postgres"), "-D", str(folder / "data"),
                                       "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                                       "-c", f"unix_socket_directories={folder}/socket", "-c", "fsync=off"],
                                      stdout=subprocess.DEVNULL, stderr=log)
        running = Postgres(server.pid, port, folder)

        def ready() -> bool | None:
            try:
                running.connect(database="postgres").close()
                return True
            except psycopg2.OperationalError:
                assert server.poll() is None, (folder / "server.log").read_text()
                return None
        wait_for(ready, timeout=60, what="PostgreSQL to take connections", interval=0.5)
        admin = running.connect(database="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        admin.close()
        yield running
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Farm:
    running: Running
    rest: local.Rest
    pids: list[int]


def settings(running: Running, postgres: Postgres, repo: Path, spec: dict[str, Any]) -> dict[str, Any]:
    return {"title": "oscarvt on PostgreSQL", "url": running.url, "www_port": running.www,
            "worker_port": running.worker, "logs_port": running.logs, "oscarvt": str(local.BIN / "oscarvt"),
            "db_url": f"postgresql://{USER}@127.0.0.1:{postgres.port}/{DATABASE}", "admins": ["admin"],
            "repositories": [{"name": "oscar", "url": str(repo), "poll_interval": 3600}],
            "workers": [{"name": "hv1"}],
            "builders": [{"name": "b1", "repository": "oscar", "workers": ["hv1"], "nodes": 1, "boot": "cdrom",
                          "spec": spec}]}


@pytest.mark.vm  # PostgreSQL listens on a port: inside the test command's network namespace
def test_a_wrong_database_password_stops_the_master_before_it_starts(tmp_path, postgres):
    """The password really comes from db-password: with another one, creating the tables fails."""
    running, folder = Running(tmp_path), tmp_path / "master"
    with pytest.raises(OscarvtError, match="buildbot upgrade-master failed"):
        local.create_master(folder, settings(running, postgres, tmp_path, {"template": "/t.qcow2",
                                                                           "ssh": {"password": "x"}}),
                            {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n",
                             "db-password": "not-the-password\n"})
    again = subprocess.run([str(local.BIN / "buildbot"), "upgrade-master", str(folder)], capture_output=True,
                           text=True, timeout=120)
    assert f'password authentication failed for user "{USER}"' in again.stdout + again.stderr
    with closing(postgres.connect()) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'builds'")
        assert cursor.fetchone() == (0,)  # nothing was made


@pytest.fixture(scope="module")
def farm(tmp_path_factory, postgres) -> Iterator[Farm]:
    template, _ = build_template()
    root = tmp_path_factory.mktemp("pg")
    running = Running(root)
    repo = local.git_repo(ROOT / "examples" / "oscar-mini", root / "repo")
    farm = Farm(running, local.Rest(running.url), [])
    try:
        local.create_master(root / "master", settings(running, postgres, repo, template_spec_data(template)),
                            {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n",
                             "db-password": PASSWORD + "\n"})
        farm.pids.append(local.start_master(root / "master"))
        local.create_worker(root / "worker", "hv1", running.worker, "worker-password")
        farm.pids.append(local.start_worker(root / "worker"))
        wait_for(lambda: True if all(w["connected_to"] for w in farm.rest.get("workers")["workers"]) else None,
                 timeout=60, what="the worker to connect")
        yield farm
    finally:
        for pid in reversed(farm.pids):
            local.stop(pid)
        oscarvt("reap", "--under", root / "worker", "--stop-drivers")


@pytest.mark.vm
def test_a_build_passes_on_postgresql_with_its_cluster_tests_as_test_results(farm, postgres):
    status, reply = farm.rest.rpc("forceschedulers/force", "force",
                                  {"builderNames": ["b1"], "nodes": "1", "boot": "cdrom"}, user=ADMIN)
    assert status == 200, reply
    build = wait_for(lambda: next((b for b in farm.rest.builds("b1") if b["complete"]), None), timeout=1200,
                     what="the build to finish", interval=5)
    steps = farm.rest.steps(build)
    assert build["results"] == 0, [(s["name"], s["state_string"]) for s in steps]

    report = farm.running.root / "master" / "public_html" / "logs" / "b1" / str(build["number"]) / "headnode" / \
        "var" / "log" / "oscar" / "cluster_tests.xml"
    cases = etree.parse(str(report)).getroot().findall(".//testcase")
    assert cases  # OSCAR's JUnit report, as uploaded
    result_set, = farm.rest.get(f"builds/{build['buildid']}/test_result_sets")["test_result_sets"]
    finish = next(s for s in steps if s["name"] == "finish-oscar")
    assert (result_set["description"], result_set["category"], result_set["value_unit"], result_set["stepid"]) == (
        "OSCAR cluster tests", "pass_fail", "boolean", finish["stepid"])
    assert (result_set["tests_passed"], result_set["tests_failed"], result_set["complete"]) == (len(cases), 0, True)
    results = farm.rest.get(f"test_result_sets/{result_set['test_result_setid']}/results")["test_results"]
    # read from what step 8 printed, as OSCAR's testprint prints them (no durations): the same tests as the
    # suite's JUnit report, each labelled "NODE TEST", the cluster's own by its name
    def label(case: etree._Element) -> str:
        return case.get("name") if case.get("classname") == "cluster" else f"{case.get('classname')} {case.get('name')}"
    assert sorted((r["test_name"], r["value"], r["duration_ns"]) for r in results) == sorted(
        (f"test_cluster {label(c)}", "1", None) for c in cases)

    with urllib.request.urlopen(f"{farm.running.url}plugins/badges/b1.svg", timeout=30) as badge:
        assert b"success" in badge.read()

    with closing(postgres.connect()) as conn, conn.cursor() as cursor:  # it all lives in PostgreSQL
        cursor.execute("SELECT results FROM builds WHERE id = %s", (build["buildid"],))
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT count(*) FROM test_results WHERE test_result_setid = %s",
                       (result_set["test_result_setid"],))
        assert cursor.fetchone() == (len(cases),)
    master = farm.running.root / "master"
    for text in ((master / "twistd.log").read_text(), (master / "settings.yaml").read_text()):
        assert PASSWORD not in text
    assert qemu_pids_of(farm.running.root / "worker") == []
