"""The master's boundaries with a real master (no VMs): what it listens on, who may log in and
post to the change hook, which secret files it refuses, and the logs it serves inert."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image
from test_master import checkconfig, example, master_dir
from test_pictures import DATA, records, rgb

from oscarvt.network import free_tcp_port
from oscarvt.plotting import phase_colour, write_png
from oscarvt.timeline import STAGES, TIMELINE, timeline_figure
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.config import listen, master_config
from oscarvt_master.secret_files import HashedPasswords, SecretFileError, hashed_line, read_users

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ADMIN = ("admin", "admin-password")
HOOK = ("svn-hook", "hook-password")
SCRIPT = "<script>document.title='owned'</script>"
TAG = "<img src=x onerror=\"document.title='owned'\">"  # a file name (no slash in it)
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]


def one_line(folder: Path) -> str:
    result = checkconfig(folder)
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 1 and output[0] == "Configuration Errors:" and len(output) == 2, output
    return output[1].strip()


def test_a_plaintext_www_users_line_fails_checkconfig_in_one_line_without_the_password(tmp_path):
    folder = master_dir(tmp_path, example())
    (folder / "secrets" / "www-users").write_text("admin:admin-password\n")
    line = one_line(folder)
    assert line == (f"{folder}/secrets/www-users line 1: the password of 'admin' is not a bcrypt hash; this file "
                    "holds hashes only (htpasswd -nB USER, or python -m oscarvt_master.secret_files USER, "
                    "prints a line)")
    assert "admin-password" not in line


@pytest.mark.parametrize("name", ["worker-hv1", "www-users", "notes"])
def test_a_secret_file_its_group_or_others_may_read_is_refused_by_name(tmp_path, name):
    folder = master_dir(tmp_path, example())
    secret = folder / "secrets" / name
    if not secret.exists():
        secret.write_text("anything")
    secret.chmod(0o640)
    assert one_line(folder) == (f"{secret}: mode 0640 lets its group or others in; a secret must be private "
                                f"(chmod 600 {secret})")


def test_an_admin_without_a_line_and_a_change_hook_without_users_are_refused(tmp_path):
    settings = example()
    settings["admins"] = ["admin", "ada"]
    folder = master_dir(tmp_path, settings)
    assert one_line(folder) == f"{folder}/settings.yaml: key 'admins': ada has no line in {folder}/secrets/www-users"
    settings = {**example(), "change_hook": True}
    (tmp_path / "2").mkdir()
    folder = master_dir(tmp_path / "2", settings)
    assert one_line(folder) == (f"{folder}/settings.yaml: key 'change_hook': {folder}/secrets/change-hook-users is "
                                "missing (USER:HASH lines, a bcrypt hash each, mode 0600)")


@pytest.mark.parametrize("key, value", [("www_listen", "localhost"), ("worker_listen", "10.0.0.300"),
                                        ("logs_listen", ""), ("change_hook", "yes")])
def test_listen_addresses_and_the_change_hook_switch_are_checked(tmp_path, key, value):
    folder = master_dir(tmp_path, {**example(), key: value})
    assert f"settings.yaml: key '{key}' must be " in one_line(folder)


def test_users_files_and_listen_descriptions(tmp_path):
    users = tmp_path / "users"
    users.write_text(f"# admins\n{hashed_line(*ADMIN, rounds=4)}\n\n")
    users.chmod(0o600)
    assert list(read_users(users)) == ["admin"]
    apache = hashed_line(*ADMIN, rounds=4).replace("$2b$", "$2y$")  # the prefix htpasswd -B writes
    users.write_text(apache + "\n")
    auth = HashedPasswords(users)
    assert auth.check_credentials(b"admin", b"admin-password") and not auth.check_credentials(b"admin", b"x")
    assert not auth.check_credentials(b"nobody", b"admin-password")
    users.write_text(f"{hashed_line(*ADMIN, rounds=4)}\n{hashed_line(*ADMIN, rounds=4)}\n")
    with pytest.raises(SecretFileError, match="line 2: 'admin' has a line already"):
        read_users(users)
    link = tmp_path / "link"
    link.symlink_to(users)
    with pytest.raises(SecretFileError, match="not a regular file"):
        read_users(link)
    assert listen(8010, "127.0.0.1") == "tcp:8010:interface=127.0.0.1"
    assert listen(8010, "::1") == "tcp:8010:interface=\\:\\:1"


class Running:
    """A started master (a git repository to poll, no worker) and its ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.www, self.worker, self.logs = free_tcp_port(), free_tcp_port(), free_tcp_port()
        self.url = f"http://127.0.0.1:{self.www}/"
        self.logs_url = f"http://127.0.0.1:{self.logs}/"
        self.pid = 0

    def get(self, url: str, user: tuple[str, str] | None = None, data: bytes | None = None) -> Answer:
        """One request, its answer read whole: a client that leaves before the end of an answer can
        wedge Twisted's epoll reactor for every later connection (twisted/twisted#11625)."""
        request = urllib.request.Request(url, data=data)
        if user is not None:
            request.add_header("Authorization", "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return Answer(reply.status, reply.headers, reply.read())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.headers, error.read())


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("boundaries")
    running = Running(root)
    repo = local.git_repo(ROOT / "examples" / "oscar-mini", root / "repo")
    settings = {**example(), "url": running.url, "www_port": running.www, "worker_port": running.worker,
                "logs_port": running.logs, "change_hook": True, "mail": None}
    settings["repositories"][0].update(url=str(repo), poll_interval=3600)
    local.create_master(root / "master", settings,
                        {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n",
                         "change-hook-users": hashed_line(*HOOK, rounds=4) + "\n"})
    try:
        running.pid = local.start_master(root / "master")
        wait_for(lambda: True if running.get(f"{running.url}api/v2/builders").status == 200 else None,
                 timeout=60, what="the master's web UI")  # start_master waited for "BuildMaster is running"
        yield running
    finally:
        if running.pid:
            local.stop(running.pid)


def refused(port: int, address: str) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((address, port)) != 0


@pytest.mark.vm  # it listens on ports: inside the test command's network namespace
def test_the_master_listens_on_this_host_only_by_default(master):
    for port in (master.www, master.worker, master.logs):
        assert not refused(port, "127.0.0.1")
        assert refused(port, "127.0.0.2"), f"port {port} answers on another address than 127.0.0.1"


@pytest.mark.vm
def test_the_change_hook_refuses_anonymous_posts_and_wrong_passwords(master):
    hook = f"{master.url}change_hook/poller?poller=oscar"
    assert master.get(hook, data=b"").status == 401
    assert master.get(hook, user=(HOOK[0], "wrong"), data=b"").status == 401
    assert master.get(hook, user=ADMIN, data=b"").status == 401  # a web user is not a hook user
    assert master.get(hook, user=HOOK, data=b"").status == 200
    local.wait_logged(master.root / "master", "gitpoller: processing changes", times=1)


@pytest.mark.vm
def test_the_web_ui_checks_hashed_passwords(master):
    assert master.get(f"{master.url}auth/login", user=ADMIN).status == 200
    assert master.get(f"{master.url}auth/login", user=(ADMIN[0], "admin-passwor")).status == 401
    rest, force = local.Rest(master.url), {"builderNames": [example()["builders"][0]["name"]]}
    assert rest.rpc("forceschedulers/force", "force", force)[0] == 403  # anonymous
    assert rest.rpc("forceschedulers/force", "force", force, user=ADMIN)[0] == 200  # the hash matched


@pytest.mark.vm
def test_served_logs_are_inert_text_and_links_are_not_followed(master):
    build = master.root / "master" / "public_html" / "logs" / "b1" / "1"
    (build / "consoles").mkdir(parents=True)
    (build / "consoles" / "oscarnode1.log").write_text(f"login: {SCRIPT}\n")
    (build / "consoles" / "index.html").write_text(SCRIPT)  # would stand in for the listing
    (build / "consoles" / f"{TAG}.log").write_text("a name made to be a tag")
    (build / "1.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    (build / "shadow").symlink_to("/etc/shadow")
    (build / "etc").symlink_to("/etc")
    base = f"{master.logs_url}b1/1/"

    console = master.get(f"{base}consoles/oscarnode1.log")
    assert console.status == 200 and console.body == f"login: {SCRIPT}\n".encode()
    assert console.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert console.headers["X-Content-Type-Options"] == "nosniff"
    assert console.headers["Content-Security-Policy"] == "sandbox"
    tarball = master.get(f"{base}1.tar.gz")
    assert (tarball.headers["Content-Type"], tarball.headers["Content-Disposition"]) == ("application/gzip",
                                                                                        "attachment")
    assert tarball.headers["Content-Encoding"] is None  # a file to keep, not a page to unpack
    for path in ("shadow", "etc/passwd", "etc/", "consoles/../shadow"):
        answer = master.get(base + path)
        assert answer.status == 404, path
        assert answer.headers["Content-Security-Policy"] == "sandbox"
    listing = master.get(f"{base}consoles/").body.decode()
    assert TAG not in listing and "&lt;img" in listing and SCRIPT not in listing  # names escaped; no index.html

    for page in (f"{base}consoles/oscarnode1.log", f"{base}consoles/", f"{base}consoles/index.html"):
        dom = subprocess.run([*CHROMIUM, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
        assert "<title>owned</title>" not in dom and "<html" in dom, (page, dom[:500])
    control = subprocess.run([*CHROMIUM, "--dump-dom", f"data:text/html,{SCRIPT}"], capture_output=True,
                             text=True, timeout=120).stdout
    assert "<title>owned</title>" in control  # the same page as HTML would have run: the check can see it


@pytest.mark.vm
def test_served_pictures_are_png_images_with_the_inert_headers(master):
    """A build's timeline (drawn from a real run's data) is an image/png with nosniff and the sandbox; a
    guest's HTML named .png is an image that does not decode, not a page; an SVG is text."""
    build = master.root / "master" / "public_html" / "logs" / "b1" / "2"
    build.mkdir(parents=True)
    phases, nodes = records(DATA)
    write_png(timeline_figure(phases, nodes, phases[-1].start + 3, "cluster 3: 2 nodes, TCG"), build / TIMELINE)
    (build / "evil.png").write_text(f"<html>{SCRIPT}</html>")
    (build / "evil.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg">{SCRIPT}</svg>')
    base = f"{master.logs_url}b1/2/"
    timeline = master.get(f"{base}{TIMELINE}")
    assert timeline.status == 200 and timeline.body == (build / TIMELINE).read_bytes()
    for answer in (timeline, master.get(f"{base}evil.png")):
        assert answer.headers["Content-Type"] == "image/png"
        assert (answer.headers["X-Content-Type-Options"], answer.headers["Content-Security-Policy"]) == \
            ("nosniff", "sandbox")
        assert answer.headers["Content-Disposition"] is None  # shown, not downloaded
    assert master.get(f"{base}evil.svg").headers["Content-Type"] == "text/plain; charset=utf-8"

    ARTIFACTS.mkdir(exist_ok=True)
    for name in (TIMELINE, "evil.png", "evil.svg"):
        dom = subprocess.run([*CHROMIUM, "--dump-dom", base + name], capture_output=True, text=True,
                             timeout=120).stdout
        assert "<title>owned</title>" not in dom, (name, dom[:500])
    shot = ARTIFACTS / "served-timeline.png"
    subprocess.run([*CHROMIUM, "--window-size=1500,900", f"--screenshot={shot}", base + TIMELINE],
                   capture_output=True, timeout=120)
    with Image.open(shot) as seen:  # Chromium showed the picture: its phase colours are on the screen
        colours = {colour for _, colour in seen.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    assert {rgb(phase_colour("start-oscar")), rgb(STAGES["booted from its disk"])} <= colours


def test_a_repository_url_with_a_password_is_refused_without_showing_it(tmp_path):
    settings = example()
    settings["repositories"][0]["url"] = "https://ada:s3cret-token@git.example.org/oscar.git"
    line = one_line(master_dir(tmp_path, settings))
    assert line.endswith("key 'repositories[0].url' holds a password, which would be shown in logs, pages and "
                         "mail: give the user as 'repositories[0].user' and the password in the secret file "
                         "repository-oscar")
    assert "s3cret" not in line
    settings["repositories"][0]["url"] = "--upload-pack=touch /tmp/owned"
    (tmp_path / "2").mkdir()
    assert "key 'repositories[0].url' must not start with '-'" in one_line(master_dir(tmp_path / "2", settings))


def test_a_repository_user_takes_its_password_from_a_secret_file(tmp_path):
    settings = example()
    settings["repositories"][0].update(url="https://git.example.org/oscar.git", user="ada")
    folder = master_dir(tmp_path, settings)
    assert one_line(folder) == (f"{folder}/settings.yaml: key 'repositories[0].user': no password file "
                                f"{folder}/secrets/repository-oscar (mode 0600)")
    secret = folder / "secrets" / "repository-oscar"
    secret.write_text("s3cret-token")
    secret.chmod(0o600)
    assert checkconfig(folder).returncode == 0
    config = master_config(folder / "settings.yaml", folder)
    poller, = config["change_source"]
    user, password = poller._config_kwargs["auth_credentials"]  # what Buildbot configures the poller with
    assert (user, password.secret_name) == ("ada", "repository-oscar")  # a secret: rendered when used, masked
    checkout = config["builders"][0].factory.steps[0]
    assert checkout.kwargs["auth_credentials"][1].secret_name == "repository-oscar"  # rendered by Buildbot, masked
