"""Held-out bad input, to every verb it reaches: ONE line, ``FAIL: VERB: bad input: MESSAGE``.

Spec YAML, V2M profiles, flags, ``--inputs`` folders, cluster folders and their ``state.json``,
``--dest``, the master's settings and secrets. Each case runs the real command line and checks:
exit status 2, no traceback, only progress lines (``[   0.1s] ...``) before the verdict, the
verdict the last line and the only ``FAIL:`` line, naming the file or flag, and nothing new
left behind (no cluster folder, no logs, no cache entry, no QEMU). QEMU and mmdebstrap are
shims that fail here, so a case that gets past the input checks cannot boot or build anything;
each command runs under a 2 GiB address space limit and a timeout. No ``vm`` marker: fast.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, get_type_hints

import pytest
import yaml
from conftest import qemu_pids_of
from test_master import BUILDBOT, checkconfig, example, master_dir

from oscarvt import log
from oscarvt.cli import _parser
from oscarvt.paths import flag_path
from oscarvt.phase_table import COPY_VM_IMAGE, RUN_PHASES
from oscarvt.spec import ClusterSpec
from oscarvt_master.settings import SettingsError, load_settings

PROGRESS = re.compile(r"\[ *[0-9]+\.[0-9]s\] ")
NUL_RUNNER = "import json, sys; from oscarvt.cli import main; raise SystemExit(main(json.loads(sys.argv[1])))"
MEMORY = 2 << 30  # bytes of address space a command may use (a YAML bomb must not take the host)
LONGEST = 1000  # characters in a verdict: a message quotes a value, never a whole structure
GOOD_SPEC: dict[str, Any] = {"template": {"kernel": "vmlinuz"}, "ssh": {"password": "pw"}, "accel": "tcg",
                             "headnode": {"memory": 256}, "nodes": {"count": 2, "memory": 256, "disk": "64M"}}
Arg = str | bytes | Path


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The commands' environment: strict UTF-8 output, QEMU and mmdebstrap shims that refuse to run."""
    shims = tmp_path_factory.mktemp("shims")
    for name in ("qemu-system-x86_64", "mmdebstrap"):
        (shims / name).write_text(f"#!/bin/sh\necho 'test_bad_inputs: {name} must not run on bad input' >&2\n"
                                  "exit 99\n")
        (shims / name).chmod(0o755)
    return {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "PYTHONIOENCODING": "utf-8"}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def tree(folder: Path) -> set[Path]:
    """Every path under ``folder`` (lock files aside: a verb on an existing folder takes its lock)."""
    return {p for p in folder.rglob("*") if p.name != "lock"}


def check(env: dict[str, str], where: Path, verb: str, args: Sequence[Arg], names: Arg,
          ok: tuple[int, ...] = (2,), timeout: float = 60) -> str:
    """Run ``oscarvt ARGS`` and check the one-line rule; return the verdict.

    ``names``: what the verdict must name (a file, a flag). ``ok``: the exit statuses allowed;
    0 (destroy on a damaged state, a verb that does not read the damaged part) must be one PASS
    verdict. A command that failed leaves nothing new in ``where``.
    """
    before = tree(where)
    if any("\0" in a for a in args if isinstance(a, str)):  # exec cannot pass NUL: main() gets it
        command: list[Arg] = [sys.executable, "-c", NUL_RUNNER, json.dumps([str(a) for a in args])]
    else:
        command = [sys.executable, "-m", "oscarvt", *args]
    proc = subprocess.run(command, capture_output=True, timeout=timeout, env=env, cwd=where,
                          preexec_fn=_limit_memory)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert lines, f"no output (exit {proc.returncode})"
    verdict = lines[-1]
    if proc.returncode == 0 and 0 in ok:
        assert verdict.startswith(f"PASS: {verb}: ") and not any(line.startswith("FAIL:") for line in lines), output
        return verdict
    # Only progress lines before it, so the verdict is the one FAIL: line.
    assert all(PROGRESS.match(line) for line in lines[:-1]), output
    assert verdict.startswith(f"FAIL: {verb}: bad input: "), output
    if names:
        shown = (os.fsdecode(names) if isinstance(names, (bytes, Path)) else names).encode(errors="backslashreplace")
        assert shown.decode() in verdict, f"{verdict!r} does not name {shown.decode()!r}"
    assert len(verdict) <= LONGEST, verdict[:300]
    assert verdict.isprintable(), f"control characters in {verdict!r}"
    assert proc.returncode in ok, output
    assert sorted(tree(where) - before) == [], "left behind"
    assert qemu_pids_of(where) == []
    return verdict


# ---------------------------------------------------------------- places and files

@dataclass
class Where:
    """A test's folder: a good spec, a tree to push, a cluster made by copy-vm-image (nothing booted)."""

    tmp: Path
    spec: Path
    src: Path
    cluster: Path


Token = Arg | Callable[[Where], Arg]  # a literal argument, or one made in the test's folder


def at(make: Callable[[Path], Path], name: str) -> Callable[[Where], Path]:
    """The argument ``make`` makes at ``name`` in the test's folder."""
    return lambda w: make(w.tmp / name)


def _cluster(w: Where) -> Path:
    return w.cluster


def _new(w: Where) -> Path:
    return w.tmp / "new"


def _spec(w: Where) -> Path:
    return w.spec


def _src(w: Where) -> Path:
    return w.src


def args_in(w: Where, tokens: Sequence[Token]) -> list[Arg]:
    return [token(w) if callable(token) else token for token in tokens]


def write_spec(folder: Path, data: dict[str, Any] | bytes) -> Path:
    """A spec file in ``folder`` (with the kernel its template names beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vmlinuz").write_bytes(b"not really a kernel")
    path = folder / "spec.yaml"
    path.write_bytes(data if isinstance(data, bytes) else yaml.safe_dump(data).encode())
    return path


@pytest.fixture(scope="session")
def made_cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("made")
    spec = write_spec(folder / "spec", GOOD_SPEC)
    result = subprocess.run([sys.executable, "-m", "oscarvt", "copy-vm-image", "--cluster", str(folder / "c"),
                             "--spec", str(spec)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.fixture
def w(tmp_path: Path, made_cluster: Path) -> Where:
    shutil.copytree(made_cluster, tmp_path, dirs_exist_ok=True)
    (tmp_path / "src").mkdir()
    return Where(tmp_path, tmp_path / "spec" / "spec.yaml", tmp_path / "src", tmp_path / "c")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _loop(path: Path) -> Path:
    path.symlink_to(path.name)
    return path


def _regular(path: Path) -> Path:
    path.write_text("a regular file\n")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


# A path that cannot be read as a file: each makes it at PATH and returns what to pass.
NOT_A_FILE: dict[str, Callable[[Path], Path]] = {
    "missing": lambda p: p,
    "folder": _folder,
    "under-a-file": lambda p: _regular(p.with_name("plain")) / p.name,
    "fifo": _fifo,
    "symlink-loop": _loop,
}
# A path that cannot be a folder.
NOT_A_FOLDER: dict[str, Callable[[Path], Path]] = {
    "a-file": _regular,
    "under-a-file": lambda p: _regular(p.with_name("plain")) / p.name,
    "fifo": _fifo,
}

# ---------------------------------------------------------------- the cluster spec (copy-vm-image, run)

SPEC_VERBS = {"copy-vm-image": lambda w, spec: ["--cluster", w.tmp / "new", "--spec", spec],
              "run": lambda w, spec: ["--cluster", w.tmp / "new", "--spec", spec, "--source", w.src]}

GOOD_YAML = b"template: vmlinuz\nssh: {password: pw}\naccel: tcg\n"
BOMB = GOOD_YAML + b"nodes:\n  count:\n    - &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"    - &%c [%s]\n" % (c, b", ".join([b"*%c" % (c - 1)] * 10)) for c in range(ord("b"), ord("j")))
SPEC_TEXTS: dict[str, bytes] = {
    "empty": b"",
    "comment-only": b"# nothing here\n",
    "not-utf8": GOOD_YAML + b"nodes: {name: \xff\xfe}\n",
    "utf16": GOOD_YAML.decode().encode("utf-16"),
    "nul-byte": b"template: vm\x00linuz\nssh: {password: pw}\n",
    "nul-escaped-in-path": b'template: "vm\\0linuz"\nssh: {password: pw}\n',
    "nul-escaped-in-text": GOOD_YAML + b'oscar: {domain: "a\\0b"}\n',
    "a-list": b"- template: vmlinuz\n- ssh: {password: pw}\n",
    "a-number": b"42\n",
    "a-string": b"just some words\n",
    "int-key": GOOD_YAML + b"1: one\n",
    "null-key": GOOD_YAML + b"~: nothing\n",
    "bool-key": GOOD_YAML + b"true: yes\n",
    "int-and-null-keys": GOOD_YAML + b"1: one\n~: nothing\n",
    "list-key": GOOD_YAML + b"? [a, b]\n: x\n",
    "int-key-in-section": GOOD_YAML + b"nodes: {1: 2}\n",
    "null-and-int-keys-in-section": GOOD_YAML + b"nodes: {~: 2, 3: 4}\n",
    "deep-flow-lists": b"[" * 10000,
    "deep-flow-maps": b"{a: " * 10000,
    "deep-block-maps": b"".join(b" " * i + b"a:\n" for i in range(3000)),
    "deep-but-valid-yaml": GOOD_YAML + b"nodes: {count: " + b"[" * 500 + b"]" * 500 + b"}\n",
    "billion-laughs": BOMB,
    "huge-int-digits": GOOD_YAML + b"nodes: {count: 1" + b"0" * 5000 + b"}\n",
    "huge-float": GOOD_YAML + b"nodes: {memory: 1e400}\n",
    "long-value": GOOD_YAML + b"nodes: {boot: " + b"x" * 100000 + b"}\n",
    "duplicate-key": GOOD_YAML + b"nodes: {count: 1}\nnodes: {count: 2}\n",
    "duplicate-key-in-section": GOOD_YAML + b"nodes: {count: 1, count: 2}\n",
    "tab-indented": b"template:\n\tkernel: vmlinuz\n",
    "unclosed-quote": b'template: "vmlinuz\n',
}


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def spec_keys() -> list[tuple[str, type]]:
    """Every key of the spec (``section.key`` or a top-level key) and the type it holds."""
    found: list[tuple[str, type]] = []
    for name, hint in get_type_hints(ClusterSpec).items():
        if is_dataclass(hint):
            found += [(f"{name}.{f}", t) for f, t in get_type_hints(hint).items()]
        else:
            found.append((name, hint))
    return found


def _wrong_values(hint: Any) -> list[Any]:
    if hint is int:
        return ["12", 1.5, True, [1]]
    return [[1], {"a": 1}, True]


def _set(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    section, _, sub = key.partition(".")
    return _merge(data, {section: {sub: value}} if sub else {section: value})


NOSUCHUSER_KEYS = ("template.kernel", "template.disk", "template.initrd", "ssh.key")  # the spec's host paths
SPEC_CHANGES: list[Any] = [
    *(pytest.param(_set(GOOD_SPEC, key, value), id=f"{key}={json.dumps(value)}")
      for key, hint in spec_keys() for value in _wrong_values(hint)),
    *(pytest.param({**GOOD_SPEC, section: value}, id=f"{section}={json.dumps(value)}")
      for section in [f.name for f in fields(ClusterSpec) if f.name != "accel"] for value in (5, "text", [1])),
    *(pytest.param(_merge(GOOD_SPEC, change), id=label) for label, change in [
        ("template=null", {"template": None}),
        ("template.kernel=missing", {"template": {"kernel": "missing"}}),
        ("template.kernel=folder", {"template": {"kernel": "."}}),
        ("template.initrd-without-kernel", {"template": {"kernel": None, "disk": "vmlinuz", "initrd": "vmlinuz"}}),
        *((f"{key}=~nosuchuser", {section: {sub: "~nosuchuser/file"}}) for key in NOSUCHUSER_KEYS
          for section, sub in [key.split(".")]),
        ("oscar.dir-line-separator", {"oscar": {"dir": "/opt/o\u2028scar"}}),
        ("template.append-c1-control", {"template": {"append": "console=ttyS0 \x9b2J"}}),
        ("ssh.password-zero-width", {"ssh": {"password": "pw\u200b"}}),
        ("no-credentials", {"ssh": {"password": None}}),
        ("ssh.password=yes", {"ssh": {"password": True}}),
        ("ssh.user-newline", {"ssh": {"user": "root\nx"}}),
        ("ssh.password-cr", {"ssh": {"password": "pw\rBcc: x"}}),
        ("template.append-newline", {"template": {"append": "console=ttyS0\ninit=/bin/sh"}}),
        ("oscar.dir-newline", {"oscar": {"dir": "/opt/oscar\n; reboot"}}),
        ("oscar.bootcd-relative", {"oscar": {"bootcd": "bootcd.iso"}}),
        ("oscar.domain-newline", {"oscar": {"domain": "a\nb"}}),
        ("oscar.install_mode", {"oscar": {"install_mode": "systemimager-rsync"}}),
        ("oscar.image-removed", {"oscar": {"image": "oscarimage"}}),
        ("unknown-key", {"colour": "red"}),
        ("unknown-section-key", {"nodes": {"cuont": 2}}),
        ("nodes.count=-1", {"nodes": {"count": -1}}),
        ("nodes.count=251", {"nodes": {"count": 251}}),
        ("nodes.count=10**30", {"nodes": {"count": 10**30}}),
        ("nodes.memory=10**20", {"nodes": {"memory": 10**20}}),
        ("headnode.memory=10**20", {"headnode": {"memory": 10**20}}),
        ("headnode.cpus=10**6", {"headnode": {"cpus": 10**6}}),
        ("nodes.cpus=0", {"nodes": {"cpus": 0}}),
        ("nodes.disk=huge", {"nodes": {"disk": "99999999999999T"}}),
        ("nodes.disk=5000-digits", {"nodes": {"disk": "1" + "0" * 5000 + "M"}}),
        ("nodes.disk=0", {"nodes": {"disk": "0G"}}),
        ("nodes.disk=1K", {"nodes": {"disk": "1K"}}),
        ("timeouts.ssh=10**20", {"timeouts": {"ssh": 10**20}}),
        ("timeouts.node=0", {"timeouts": {"node": 0}}),
        ("headnode.name=Upper", {"headnode": {"name": "Head"}}),
        ("nodes.name-slash", {"nodes": {"name": "../x"}}),
        ("names-clash", {"headnode": {"name": "oscarnode1"}}),
        ("names-clash-2", {"headnode": {"name": "n2"}, "nodes": {"name": "n"}}),
        ("network.subnet=ipv6", {"network": {"subnet": "fd00::/64"}}),
        ("network.subnet=nat", {"network": {"subnet": "10.0.2.0/24"}}),
        ("network.subnet=text", {"network": {"subnet": "lan"}}),
        ("network.bridge=long", {"network": {"bridge": "b" * 16}}),
        ("network.private", {"network": {"private": "vde"}}),
        ("accel", {"accel": "hyperv"}),
    ]),
    pytest.param({**GOOD_SPEC, "template": {}}, id="template={}"),
]


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize("text", SPEC_TEXTS.values(), ids=SPEC_TEXTS.keys())
def test_spec_file(env, w, verb, text):
    spec = write_spec(w.tmp / "bad", text)
    check(env, w.tmp, verb, [verb, *SPEC_VERBS[verb](w, spec)], spec, timeout=30)


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize("data", SPEC_CHANGES)
def test_spec_key(env, w, verb, data):
    spec = write_spec(w.tmp / "bad", data)
    check(env, w.tmp, verb, [verb, *SPEC_VERBS[verb](w, spec)], spec)


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize("kind", NOT_A_FILE)
def test_spec_path(env, w, verb, kind):
    spec = NOT_A_FILE[kind](w.tmp / "bad.yaml")
    check(env, w.tmp, verb, [verb, *SPEC_VERBS[verb](w, spec)], spec, timeout=10)


# ---------------------------------------------------------------- cluster folders and state.json

CLUSTER_VERBS: dict[str, list[Token]] = {  # each verb on --cluster, with the other arguments it needs
    "copy-vm-image": ["--spec", _spec],
    "boot-headnode": [],
    "boot-compute-nodes": [],
    "checkout-oscar": ["--source", _src],
    "start-oscar": [],
    "wait-for-nodes": [],
    "finish-oscar": [],
    "grab-logs": ["--dest", at(lambda p: p, "logs")],
    "send-logs": ["--to", "devs@example.org"],
    "run": ["--spec", _spec, "--source", _src],
    "ssh": ["headnode", "--", "true"],
    "status": [],
    "keep": ["--reason", "a person"],
    "claim": ["--under", at(_folder, "host"), "--max-clusters", "1", "--wait", "1"],
    "destroy": [],
}
CREATING = ("copy-vm-image", "run", "claim")  # a missing or empty folder is where they make the cluster


def cluster_check(env: dict[str, str], w: Where, verb: str, cluster: Path, names: Arg | None = None,
                  may_pass: bool = False, timeout: float = 60) -> str:
    ok = (0, 2) if verb == "destroy" or may_pass else (2,)
    return check(env, w.tmp, verb, [verb, "--cluster", cluster, *args_in(w, CLUSTER_VERBS[verb])],
                 cluster if names is None else names, ok, timeout)


def _state(w: Where) -> dict[str, Any]:
    return dict(json.loads((w.cluster / "state.json").read_text()))


def _vms(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], bytes]:
    """A damage made by ``change`` on the cluster's good state."""
    def damage(state: dict[str, Any]) -> bytes:
        change(state)
        return json.dumps(state).encode()
    return damage


# A state.json no JSON reader or cluster.load takes: the verdict names the cluster.
UNREADABLE_STATES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "empty": lambda s: b"",
    "list": lambda s: b"[]",
    "empty-object": lambda s: b"{}",
    "vms-int": lambda s: b'{"vms": 3}',
    "truncated": lambda s: json.dumps(s).encode()[:200],
    "not-utf8": lambda s: json.dumps(s).encode().replace(b'"headnode"', b'"head\xffnode"'),
    "nul-byte": lambda s: json.dumps(s).encode() + b"\x00",
    "deep": lambda s: b"[" * 100000 + b"]" * 100000,
    "huge-int": lambda s: json.dumps(s).encode().replace(b'"cluster_id": ', b'"cluster_id": 1' + b"0" * 5000),
}
# JSON of a cluster state with a part damaged: one line of bad input (which may be about another
# problem met first, e.g. "headnode has not been booted"); a verb that does not read the part may pass.
DAMAGED_STATES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "no-spec": _vms(lambda s: s.pop("spec")),
    "spec-damaged": _vms(lambda s: s.update(spec={"template": 5})),
    "vm-not-a-mapping": _vms(lambda s: s["vms"].update(headnode=3)),
    "vm-no-fields": _vms(lambda s: s["vms"].update(headnode={})),
    "vm-wrong-types": _vms(lambda s: s["vms"]["headnode"].update(role=["headnode"], ip=5, mac=None, index="0")),
    "vm-name-a-path": _vms(lambda s: s["vms"].update({"../../escape": s["vms"].pop("oscarnode1")})),
    "no-headnode": _vms(lambda s: s["vms"].pop("headnode")),
    "phases-not-a-list": _vms(lambda s: s.update(phases=5)),
    "accel-text": _vms(lambda s: s.update(accel="kvm")),
}


UNREAD = {"status": {"no-spec", "spec-damaged", "no-headnode", "accel-text"},  # parts a verb does not read
          "grab-logs": {"no-spec", "spec-damaged", "accel-text"},
          "keep": {"spec-damaged"}}  # keep only marks the state


def state_cases(damages: dict[str, Any]) -> list[Any]:
    return [pytest.param(damage, verb, id=f"{damage}-{verb}") for damage in damages for verb in CLUSTER_VERBS]


@pytest.mark.parametrize("damage, verb", state_cases(UNREADABLE_STATES))
def test_unreadable_state(env, w, verb, damage):
    (w.cluster / "state.json").write_bytes(UNREADABLE_STATES[damage](_state(w)))
    cluster_check(env, w, verb, w.cluster)


@pytest.mark.parametrize("damage, verb", state_cases(DAMAGED_STATES))
def test_damaged_state(env, w, verb, damage):
    (w.cluster / "state.json").write_bytes(DAMAGED_STATES[damage](_state(w)))
    cluster_check(env, w, verb, w.cluster, "", damage in UNREAD.get(verb, ()))


@pytest.mark.parametrize("verb", [phase.name for phase in RUN_PHASES if phase is not COPY_VM_IMAGE])
def test_damaged_spec_in_state_names_the_state(env, w, verb):
    (w.cluster / "state.json").write_bytes(DAMAGED_STATES["spec-damaged"](_state(w)))
    cluster_check(env, w, verb, w.cluster, w.cluster / "state.json")


FOLDERS: dict[str, Callable[[Where], Path]] = {
    "a-file": lambda w: _regular(w.tmp / "file"),
    "under-a-file": lambda w: _regular(w.tmp / "file") / "c",
    "fifo": lambda w: _fifo(w.tmp / "fifo"),
    "missing": lambda w: w.tmp / "missing",
    "empty-folder": lambda w: _folder(w.tmp / "empty"),
    "state-a-folder": lambda w: _folder(_folder(w.tmp / "d") / "state.json").parent,
    "state-missing-but-profiles": lambda w: (w.cluster / "state.json").unlink() or w.cluster,
}


@pytest.mark.parametrize("kind, verb", [(kind, verb) for kind in FOLDERS for verb in CLUSTER_VERBS
                                         if not (verb in CREATING and kind in ("missing", "empty-folder"))])
def test_cluster_folder(env, w, verb, kind):
    cluster_check(env, w, verb, FOLDERS[kind](w), timeout=15)


@pytest.mark.parametrize("verb", ["status", "destroy"])  # the rest read it the same way
def test_state_a_fifo(env, w, verb):
    cluster_check(env, w, verb, _fifo(_folder(w.tmp / "d") / "state.json").parent, timeout=5)


@pytest.mark.parametrize("verb, extra", [("boot-headnode", []), ("boot-compute-nodes", ["--boot", "disk"]),
                                         ("destroy", [])])
@pytest.mark.parametrize("damage", ["not-xml", "bad-mac", "host-file-deep"])
def test_damaged_profiles(env, w, verb, extra, damage):
    for profile in (w.cluster / "profiles").glob("*.xml"):
        if damage == "host-file-deep":
            profile.with_name(f"{profile.stem}.oscarvt.json").write_bytes(b"[" * 100000)
        else:
            text = profile.read_text()
            profile.write_text(text[:40] if damage == "not-xml" else re.sub(r"<mac>[^<]*", "<mac>52:54", text))
    check(env, w.tmp, verb, [verb, "--cluster", w.cluster, *extra], w.cluster / "profiles",
          (0, 2) if verb == "destroy" else (2,))


# ---------------------------------------------------------------- flags (argparse's and the verbs' own)

def _inputs(files: dict[str, bytes | None]) -> Callable[[Path], Path]:
    """An --inputs folder holding ``files`` (None: a folder of that name; b"fifo": a FIFO)."""
    def make(folder: Path) -> Path:
        folder.mkdir()
        for name, data in files.items():
            if data is None:
                (folder / name).mkdir()
            elif data == b"fifo":
                os.mkfifo(folder / name)
            else:
                (folder / name).write_bytes(data)
        return folder
    return make


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path
    return make


MISSING: dict[str, Callable[[Path], Path]] = {"missing": lambda p: p}
INPUTS: dict[str, Callable[[Path], Path]] = {
    **NOT_A_FOLDER, **MISSING,
    "unknown-file": _inputs({"notes.txt": b"hello\n"}),
    "input-file-a-folder": _inputs({"defineclients": None}),
    "input-file-a-fifo": _inputs({"buildimage": b"fifo"}),
    "input-file-not-utf8": _inputs({"defineclients": b"2\ndom\xe9ain\n10\n"}),
    "input-file-nul": _inputs({"defineclients": b"2\nexample\x00.org\n10\n"}),
    "mac-file-not-utf8": _inputs({"client.macs": b"52:54:00:00:00:02\t# n\xe91\n"}),
    "networkclients-empty": _inputs({"networkclients": b""}),
    "networkclients-hangs": _inputs({"networkclients": b"1\nclient.macs\n7\n"}),
    "defineclients-item-1": _inputs({"defineclients": b"1\noscarimage\n10\n"}),
}
KEYS: dict[str, Callable[[Path], Path]] = {
    **NOT_A_FILE, "empty": _bytes(b""), "not-utf8": _bytes(b"ssh-ed25519 AAAA\xff me\n"),
    "nul": _bytes(b"ssh-ed25519 A\0\n"), "not-a-key": _bytes(b"hello world\n"),
}
SEND = ["send-logs", "--cluster", _cluster]
RUN = ["run", "--cluster", _new, "--spec", _spec]
FLAG_CASES: list[tuple[str, str, list[Token], str]] = [
    # argparse: no verb, unknown verb, unknown flags, missing flags and arguments, bad choices, bad numbers
    ("oscarvt", "no-verb", [], "VERB"),
    ("oscarvt", "unknown-verb", ["frobnicate"], "frobnicate"),
    ("oscarvt", "unknown-top-flag", ["--frobnicate", "status", "--cluster", _cluster], "--frobnicate"),
    *(("oscarvt", f"{verb}-unknown-flag", [verb, "--cluster", _cluster, "--bogus", *CLUSTER_VERBS[verb]], "--bogus")
      for verb in CLUSTER_VERBS),
    *(("oscarvt", f"{verb}-no-cluster", [verb, *(CLUSTER_VERBS[verb])], "--cluster") for verb in CLUSTER_VERBS),
    ("oscarvt", "cluster-without-value", ["status", "--cluster"], "--cluster"),
    ("oscarvt", "copy-vm-image-no-spec", ["copy-vm-image", "--cluster", _new], "--spec"),
    ("oscarvt", "run-no-spec", ["run", "--cluster", _new, "--source", _src], "--spec"),
    ("oscarvt", "grab-logs-no-dest", ["grab-logs", "--cluster", _cluster], "--dest"),
    ("oscarvt", "send-logs-no-to", SEND, "--to"),
    ("oscarvt", "ssh-no-vm", ["ssh", "--cluster", _cluster], "VM"),
    ("oscarvt", "image-no-tool", ["image"], "TOOL"),
    ("oscarvt", "image-unknown-tool", ["image", "paint"], "paint"),
    ("oscarvt", "profile-no-tool", ["profile"], "TOOL"),
    ("oscarvt", "profile-validate-no-file", ["profile", "validate"], "FILE"),
    ("oscarvt", "profile-render-no-backend", ["profile", "render", "p.xml"], "--backend"),
    ("oscarvt", "profile-render-no-file", ["profile", "render", "--backend", "qemu"], "FILE"),
    ("oscarvt", "profile-render-bad-backend", ["profile", "render", "--backend", "vmware", "p.xml"], "--backend"),
    ("oscarvt", "boot-floppy", ["boot-compute-nodes", "--cluster", _cluster, "--boot", "floppy"], "--boot"),
    ("oscarvt", "run-boot-disk", [*RUN, "--source", _src, "--boot", "disk"], "--boot"),
    ("oscarvt", "checkout-vcs-cvs", ["checkout-oscar", "--cluster", _cluster, "--url", "x", "--vcs", "cvs"], "--vcs"),
    ("oscarvt", "run-vcs-cvs", [*RUN, "--url", "x", "--vcs", "cvs"], "--vcs"),
    ("oscarvt", "timeout-abc", ["wait-for-nodes", "--cluster", _cluster, "--timeout", "abc"], "--timeout"),
    ("oscarvt", "timeout-empty", ["wait-for-nodes", "--cluster", _cluster, "--timeout", ""], "--timeout"),
    ("oscarvt", "claim-max-abc", ["claim", "--cluster", _new, "--under", _src, "--max-clusters", "abc"],
     "--max-clusters"),
    ("oscarvt", "reap-no-under", ["reap"], "--under"),
    # the verbs' own checks of their flags
    *(("reap", f"under-{kind}", ["reap", "--under", make], "--under")
      for kind, make in (("missing", at(lambda p: p, "missing")), ("a-file", at(_regular, "file")),
                         ("nul", "u\0x"))),
    *(("claim", f"max-{n}", ["claim", "--cluster", _new, "--under", _src, "--max-clusters", n], "--max-clusters")
      for n in ("0", "-1")),
    ("claim", "under-missing", ["claim", "--cluster", _new, "--under", at(lambda p: p, "missing"),
                                "--max-clusters", "1"], "--under"),
    *(("wait-for-nodes", f"timeout={t}", ["wait-for-nodes", "--cluster", _cluster, "--timeout", t], "--timeout")
      for t in ("-5", "nan", "inf", "1e400")),
    *(("send-logs", f"smtp={s!r}", [*SEND, "--to", "a@b.org", "--smtp", s], "--smtp")
      for s in ("nohost", "host:", ":25", "host:0", "host:70000", "host:-1", "host:x", "host:\u00b2", "host:25\n")),
    *(("send-logs", f"to={t!r}", [*SEND, "--to", t], "--to")
      for t in ("nobody", "", "a@b\nBcc: x@y", "a@b\r\nBcc: x@y", "a@b\x1b[2J", "a@b\x00c", "a@b.org\u2028x")),
    *(("send-logs", f"sender={s!r}", [*SEND, "--to", "a@b.org", "--sender", s], "--sender")
      for s in ("x@y\r\nBcc: evil@example.org", "x@y\nSubject: hi", "not an address", "")),
    *(("checkout-oscar", f"source-{kind}", ["checkout-oscar", "--cluster", _cluster, "--source", at(make, "s")],
       "--source") for kind, make in {**NOT_A_FOLDER, **MISSING}.items()),
    ("checkout-oscar", "source-and-url", ["checkout-oscar", "--cluster", _cluster, "--source", _src, "--url", "x"],
     "--source"),
    ("checkout-oscar", "neither", ["checkout-oscar", "--cluster", _cluster], "--source"),
    ("checkout-oscar", "revision-with-source", ["checkout-oscar", "--cluster", _cluster, "--source", _src,
                                                "--revision", "1"], "--revision"),
    ("checkout-oscar", "source-nul", ["checkout-oscar", "--cluster", _cluster, "--source", "s\0x"], "--source"),
    *(("boot-compute-nodes", f"iso-{kind}", ["boot-compute-nodes", "--cluster", _cluster, "--iso", at(make, "n.iso")],
       "--iso") for kind, make in NOT_A_FILE.items()),
    ("boot-compute-nodes", "iso-nul", ["boot-compute-nodes", "--cluster", _cluster, "--iso", "n\0.iso"], "--iso"),
    ("boot-compute-nodes", "unknown-node", ["boot-compute-nodes", "--cluster", _cluster, "--boot", "disk",
                                            "--node", "oscarnode9"], "--node"),
    ("boot-compute-nodes", "node-newline", ["boot-compute-nodes", "--cluster", _cluster, "--boot", "disk",
                                            "--node", "oscarnode1\nx"], "--node"),
    *(("start-oscar", f"inputs-{kind}", ["start-oscar", "--cluster", _cluster, "--inputs", at(make, "inputs")],
       "--inputs") for kind, make in INPUTS.items()),
    *(("run", f"inputs-{kind}", [*RUN, "--source", _src, "--inputs", at(make, "inputs")], "--inputs")
      for kind, make in INPUTS.items()),
    *(("run", f"source-{kind}", [*RUN, "--source", at(make, "s")], "--source")
      for kind, make in {**NOT_A_FOLDER, **MISSING}.items()),
    ("run", "neither", RUN, "--source"),
    *(("run", f"logs-{kind}", [*RUN, "--source", _src, "--logs", at(make, "l")], "--logs")
      for kind, make in NOT_A_FOLDER.items()),
    *(("grab-logs", f"dest-{kind}", ["grab-logs", "--cluster", _cluster, "--dest", at(make, "l")], "--dest")
      for kind, make in NOT_A_FOLDER.items()),
    ("grab-logs", "dest-nul", ["grab-logs", "--cluster", _cluster, "--dest", "l\0x"], "--dest"),
    ("ssh", "no-command", ["ssh", "--cluster", _cluster, "headnode"], "command"),
    ("ssh", "unknown-vm", ["ssh", "--cluster", _cluster, "nosuchvm", "--", "true"], "nosuchvm"),
    ("status", "cluster-nul", ["status", "--cluster", "c\0x"], "--cluster"),
    ("destroy", "cluster-nul", ["destroy", "--cluster", "c\0x"], "--cluster"),
    ("copy-vm-image", "spec-nul", ["copy-vm-image", "--cluster", _new, "--spec", "s\0.yaml"], "s\\x00.yaml"),
    ("copy-vm-image", "spec-name-not-utf8", ["copy-vm-image", "--cluster", _new, "--spec", b"\xff.yaml"], "\udcff"),
    ("status", "cluster-name-not-utf8", ["status", "--cluster", b"\xff"], "\udcff"),
    ("profile validate", "file-nul", ["profile", "validate", "p\0.xml"], "p"),
    ("profile validate", "file-name-not-utf8", ["profile", "validate", b"\xff.xml"], "\udcff"),
    # image build: checked before the cache is touched or mmdebstrap runs
    *(("image build", f"size={s!r}", ["image", "build", "--size", s], "--size")
      for s in ("abc", "0", "8X", "", "8G\n", "1M", "99999T")),
    ("image build", "size=-1G", ["image", "build", "--size=-1G"], "--size"),
    *(("image build", f"suite={s!r}", ["image", "build", "--suite", s], "--suite")
      for s in ("", "book worm", "../etc", "bookworm\n")),
    *(("image build", f"password={p!r}", ["image", "build", "--password", p], "--password")
      for p in ("pw\nx:y", "pw\r", "")),
    *(("image build", f"key-{kind}", ["image", "build", "--authorized-key", at(make, "key.pub")], "--authorized-key")
      for kind, make in KEYS.items()),
]


def path_flags() -> list[tuple[list[str], str]]:
    """Every path argument of every verb (argparse ``type`` ``flag_path``): the verb's words and the flag
    (or the positional's metavar), read from oscarvt's own parser, so that a new one is tried too."""
    found = []

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
            elif action.type is flag_path:
                found.append((words, action.option_strings[0] if action.option_strings else str(action.metavar)))
    walk(_parser(), [])
    return found


FLAG_CASES += [("oscarvt", f"{' '.join(words)}-{flag}=~nosuchuser",
                [*words, *([flag] if flag.startswith("-") else []), "~nosuchuser/x"], flag)
               for words, flag in path_flags()]
FLAG_CASES += [
    *(("keep", f"reason={r[:20]!r}", ["keep", "--cluster", _cluster, "--reason", r], "--reason")
      for r in ("a\x1b[2Jb", "held\nfor me", "", "x" * 201, "tab\there", "a\u2028b")),
    ("claim", "cluster-not-under", ["claim", "--cluster", at(lambda p: p / "n", "elsewhere"), "--under", _src,
                                    "--max-clusters", "1"], "--under"),
    *(("oscarvt", f"image-build-mirror={m[:20]!r}", ["image", "build", "--mirror", m], "--mirror")
      for m in ("http://deb.debian.org/debian\x9b", "http://deb.debian.org/" + "d" * 1000)),
]


@pytest.mark.parametrize("verb, tokens, names", [
    pytest.param(verb, tokens, names, id=f"{verb}:{label}") for verb, label, tokens, names in FLAG_CASES])
def test_flag(env, w, verb, tokens, names):
    check({**env, "OSCARVT_CACHE": str(w.tmp / "cache")}, w.tmp, verb, args_in(w, tokens), names, timeout=15)


# ---------------------------------------------------------------- V2M profiles (profile validate, profile render)

PROFILE_VERBS = {"profile validate": ["profile", "validate"], "profile render": ["profile", "render",
                                                                                  "--backend", "qemu"]}


def _profile_cases() -> dict[str, Callable[[str], tuple[bytes, bytes | None]]]:
    """Each damage: (the profile's bytes, the bytes of the file beside it or None) from the good text."""
    def xml(old: str, new: str) -> Callable[[str], tuple[bytes, None]]:
        return lambda text: (re.sub(old, new, text, count=1).encode(), None)

    def beside(data: bytes) -> Callable[[str], tuple[bytes, bytes]]:
        return lambda text: (text.encode(), data)

    deep = "<a>" * 10000 + "</a>" * 10000
    laughs = ('<!DOCTYPE profile PUBLIC "" "/etc/libv3m/v3m_profile.dtd" [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {c} "{("&" + chr(ord(c) - 1) + ";") * 10}">' for c in "bcdefghij") + "]>")
    return {
        "empty": lambda text: (b"", None),
        "not-utf8": lambda text: (text.replace("<name>headnode", "<name>head\udcffnode").encode(
            errors="surrogateescape"), None),
        "latin1-declared-utf8": lambda text: (text.replace("headnode</name>", "h\u00e9adnode</name>").encode("latin-1"),
                                              None),
        "nul-byte": xml("<name>headnode", "<name>head\0node"),
        "no-doctype": xml('<!DOCTYPE profile PUBLIC "" "/etc/libv3m/v3m_profile.dtd">', ""),
        "other-doctype": xml("v3m_profile.dtd", "other.dtd"),
        "billion-laughs": lambda text: (re.sub(r"<!DOCTYPE[^>]*>", laughs, text).replace(
            "<name>headnode", "<name>&j;").encode(), None),
        "external-entity": lambda text: (re.sub(r"<!DOCTYPE[^>]*>", '<!DOCTYPE profile PUBLIC "" '
                                                '"/etc/libv3m/v3m_profile.dtd" [<!ENTITY x SYSTEM "/etc/passwd">]>',
                                                text).replace("<name>headnode", "<name>&x;").encode(), None),
        "deep": xml("<name>", deep + "<name>"),
        "not-a-profile": lambda text: (b"<?xml version='1.0'?>\n<html/>\n", None),
        "vm-type": xml("<type>Qemu", "<type>VirtualBox"),
        "cpu-huge": xml("<cpu>[0-9]+", "<cpu>1" + "0" * 5000),
        "cpu-superscript": xml("<cpu>[0-9]+", "<cpu>\u00b2"),
        "memory-arabic-digits": xml("<memory>[0-9]+", "<memory>\u0661\u0662\u0668"),
        "memory-zero": xml("<memory>[0-9]+", "<memory>0"),
        "size-superscript": xml('size="64"', 'size="\u00b2"'),
        "size-huge": xml('size="64"', 'size="1' + "0" * 5000 + '"'),
        "mac": xml("<mac>52:54:01", "<mac>52:54"),
        "nic-type": xml("<type>VLAN", "<type>ETHERNET"),
        "name-empty": xml("<name>headnode", "<name>"),
        "image-empty": lambda text: (re.sub(r"(<image[^>]*>)[^<]*", r"\1", text).encode(), None),
        "beside-empty": beside(b""),
        "beside-not-utf8": beside(b'{"append": "\xff"}'),
        "beside-nul": beside(b'{"append": "a\x00"}'),
        "beside-list": beside(b"[]"),
        "beside-deep": beside(b"[" * 100000 + b"]" * 100000),
        "beside-huge-int": beside(b'{"boot": 1' + b"0" * 5000 + b"}"),
        "beside-boot": beside(b'{"boot": "floppy"}'),
        "beside-kernel-int": beside(b'{"kernel": 5}'),
        "beside-unknown": beside(b'{"colour": "red"}'),
        "beside-networks-list": beside(b'{"networks": []}'),
        "beside-identity-text": beside(b'{"identity": "yes"}'),
        "beside-identity-number": beside(b'{"identity": 1}'),
        "beside-mcast-superscript": beside(b'{"networks": {"nic2": {"name": "lan", "mcast": "239.1.1.1:\xc2\xb2"}}}'),
        "beside-mcast-arabic": beside(b'{"networks": {"nic2": {"name": "lan", "mcast": "\xd9\xa2\xd9\xa3'
                                      b'\xd9\xa9.1.1.1:1234"}}}'),
        "beside-mcast-port": beside(b'{"networks": {"nic2": {"name": "lan", "mcast": "239.1.1.1:1' + b"0" * 5000
                                    + b'"}}}'),
    }


PROFILES = _profile_cases()


@pytest.mark.parametrize("verb", PROFILE_VERBS)
@pytest.mark.parametrize("damage", PROFILES)
def test_profile(env, w, verb, damage):
    good = (w.cluster / "profiles" / "headnode.xml").read_text()
    data, beside_data = PROFILES[damage](good)
    path = names = _bytes(data)(w.tmp / "p.xml")
    if beside_data is not None:
        names = _bytes(beside_data)(w.tmp / "p.oscarvt.json")
    check(env, w.tmp, verb, [*PROFILE_VERBS[verb], path], names)


@pytest.mark.parametrize("verb", PROFILE_VERBS)
@pytest.mark.parametrize("kind", [*NOT_A_FILE, "beside-a-folder", "beside-a-fifo"])
def test_profile_path(env, w, verb, kind):
    path = w.tmp / "p.xml"
    if kind.startswith("beside"):
        shutil.copy(w.cluster / "profiles" / "headnode.xml", path)
        names = (_folder if kind == "beside-a-folder" else _fifo)(w.tmp / "p.oscarvt.json")
    else:
        path = names = NOT_A_FILE[kind](path)
    check(env, w.tmp, verb, [*PROFILE_VERBS[verb], path], names, timeout=10)


# ---------------------------------------------------------------- master settings (load_settings, checkconfig)

SETTING_KINDS = {
    "text": ["title", "url", "db_url", "oscarvt", "secrets_dir", "logs_url", "repositories.0.name",
             "repositories.0.url", "repositories.0.vcs", "repositories.0.branch", "workers.0.name", "builders.0.name",
             "builders.0.repository", "builders.0.distribution", "builders.0.arch", "builders.0.boot",
             "builders.0.workers.0", "mail.relay", "mail.from", "mail.to.0", "mail.admins.0", "mail.mode.0",
             "admins.0", "repositories.0.github", "github.api_url", "log_horizon", "build_data_horizon"],
    "int": ["www_port", "worker_port", "logs_port", "retries", "nightly.hour", "nightly.minute",
            "repositories.0.poll_interval", "workers.0.max_clusters", "builders.0.nodes"],
    "list": ["repositories", "workers", "builders", "admins", "mail.to", "mail.admins", "mail.mode",
             "builders.0.workers"],
    "mapping": ["nightly", "mail", "builders.0.spec", "repositories.0", "workers.0", "builders.0", "github"],
}
WRONG = {"text": [5, [1], {"a": 1}, True], "int": ["12", 1.5, True, [1]], "list": ["text", {"a": 1}, 5],
         "mapping": ["text", [1], 5]}


def setting(data: Any, key: str, value: Any) -> Any:
    """``data`` with ``key`` (dotted, list indexes as numbers) set to ``value``."""
    *path, last = [int(k) if k.isdigit() else k for k in key.split(".")]
    target = data
    for k in path:
        target = target[k]
    target[last] = value
    return data


def key_shown(key: str) -> str:
    """How a message names ``key``: ``builders[0].nodes``; a list item by its list (``mail.to``)."""
    return re.sub(r"\[[0-9]+\]$", "", re.sub(r"\.([0-9]+)", r"[\1]", key))


SETTINGS_BOMB = "".join(f"  - &{c} [{', '.join([f'*{chr(ord(c) - 1)}'] * 10)}]\n" for c in "bcdef")
SETTINGS: list[Any] = [
    *(pytest.param(key, value, key_shown(key), id=f"{key}={json.dumps(value)}")
      for kind, keys in SETTING_KINDS.items() for key in keys for value in WRONG[kind]),
    *(pytest.param(key, value, key_shown(key), id=f"{key}={json.dumps(value)}") for key, value in [
        ("mail.relay", "localhost:0"), ("mail.relay", "localhost:70000"), ("mail.relay", "localhost:-1"),
        ("mail.relay", "localhost:x"), ("mail.relay", "localhost:"), ("mail.relay", ":25"),
        ("mail.relay", "localhost:25\n"), ("mail.relay", "local host:25"),
        ("mail.to.0", "devs@example.org\nBcc: evil@example.org"), ("mail.to.0", "devs@example.org\r"),
        ("mail.from", "oscarvt@example.org\r\nBcc: evil@example.org"),
        ("mail.admins.0", "admins@example.org\nBcc: evil@example.org"), ("mail.to", []),
        ("mail.mode", ["sometimes"]), ("workers.0.name", "hv\n1"), ("builders.0.name", "b\nx"),
        ("repositories.0.name", "oscar\n"), ("admins.0", "admin\nroot"), ("title", "t\x00"),
        ("www_port", 0), ("www_port", 70000), ("worker_port", -1), ("logs_port", 70000), ("logs_port", False),
        ("logs_port", 0.0), ("logs_url", []), ("logs_url", ""), ("retries", 11), ("retries", -1),
        ("builders.0.nodes", 0), ("builders.0.nodes", 10**30),
        ("builders.0.workers", []), ("builders.0.workers", ["hv9"]), ("builders.0.repository", "nosuch"),
        ("builders.0.spec", {}),
        ("workers.0.password", "secret"), ("db_url", "mysql://x"), ("colour", "blue"), ("nightly.second", 0),
        ("repositories.0.poll_interval", 0), ("workers.0.max_clusters", 0),
        ("db_url", "postgresql://buildbot:s3cret@127.0.0.1/buildbot"), ("db_url", "postgresql://[::1/x"),
        ("log_horizon", "0s"), ("log_horizon", "3651d"), ("log_horizon", "30 days"), ("log_horizon", "-1d"),
        ("log_horizon", "1y"), ("log_horizon", "9" * 5000 + "d"), ("build_data_horizon", "30D"),
        ("build_data_horizon", "1.5d"), ("github.hook", "yes"), ("github.statuses", 1), ("github.colour", "blue"),
        ("github.api_url", "ftp://api.github.com"), ("github.api_url", "https://ada:token@api.github.com"),
        ("github.api_url", "api.github.com"), ("repositories.0.github", "oscar"),
        ("repositories.0.github", "oscar-cluster/oscar/extra"), ("repositories.0.github", "-x/oscar"),
        ("repositories.0.github", "oscar-cluster/oscar.git"), ("repositories.0.github", "oscar-cluster/.."),
        ("repositories.0.github", "oscar-cluster/oscar\nx"),
    ]),
    *(pytest.param(key, value, shown, id=f"{key}={json.dumps(value)}") for key, value, shown in [
        ("nightly.hour", 24, "nightly"), ("nightly.minute", -1, "nightly"),
        ("builders.0.spec.accel", "fast", "builders[0].spec"),
        ("builders.0.spec.headnode", {"name": "oscarnode1"}, "builders[0].spec"),
        ("builders.0.spec.nodes.memory", 10**20, "builders[0].spec"),
        ("repositories.0.vcs", "svn", "repositories[0].github"),  # a repository on GitHub is a git one
        ("github", {"hook": True, "statuses": False}, "github"),  # with no repository on GitHub (below)
    ]),
    *(pytest.param(key, value, key, id=f"{key}={value}-taken") for key, value in [
        ("worker_port", 8010), ("logs_port", 8010), ("logs_port", 9989), ("www_port", 9989)]),
    pytest.param("workers", [{"name": "hv1"}, {"name": "hv1"}], "workers", id="two-workers-one-name"),
    pytest.param("builders.1", None, "builders", id="two-builders-one-name"),
    pytest.param("repositories", [{"name": "oscar", "url": "/a"}, {"name": "oscar", "url": "/b"}], "repositories",
                 id="two-repositories-one-name"),
]

EXAMPLE = (Path(__file__).parent.parent / "master.example.yaml").read_bytes()
SETTINGS_FILES: dict[str, bytes] = {
    "empty": b"",
    "a-list": b"- title\n",
    "not-utf8": b"title: caf\xe9\n",
    "nul-byte": b"title: a\x00b\n",
    "deep": b"[" * 10000,
    "deep-block": b"".join(b" " * i + b"a:\n" for i in range(3000)),
    "huge-int-digits": b"www_port: 1" + b"0" * 5000 + b"\n",
    "int-and-null-keys": b"1: one\n~: two\n",
    "duplicate-key": EXAMPLE + b"title: twice\n",
    "billion-laughs": EXAMPLE.replace(b"title: OSCAR on virtual clusters",
                                      b"title:\n  - &a [x, x, x, x, x, x, x, x, x, x]\n" + SETTINGS_BOMB.encode()),
}


def settings_error(path: Path) -> str:
    with pytest.raises(SettingsError) as error:
        load_settings(path)
    message = str(error.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}:"), message
    assert len(message) <= LONGEST, message[:300]
    return message


@pytest.mark.parametrize("key, value, shown", SETTINGS)
def test_settings_key(tmp_path, key, value, shown):
    data = example()
    if key == "github":
        data["repositories"][0].pop("github")
    if key == "builders.1":
        data["builders"].append(dict(data["builders"][0]))
    else:
        setting(data, key, value)
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    assert f"'{shown}" in settings_error(path)


@pytest.mark.parametrize("label", SETTINGS_FILES)
def test_settings_file(tmp_path, label):
    settings_error(_bytes(SETTINGS_FILES[label])(tmp_path / "settings.yaml"))


@pytest.mark.parametrize("kind", [kind for kind in NOT_A_FILE if kind != "fifo"])  # in this process: no FIFO
def test_settings_path(tmp_path, kind):
    settings_error(NOT_A_FILE[kind](tmp_path / "settings.yaml"))


def checkconfig_line(folder: Path, settings: Path | None = None) -> str:
    """The one error line ``buildbot checkconfig`` prints (``settings``: $OSCARVT_SETTINGS)."""
    if settings is None:
        result = checkconfig(folder)
    else:
        result = subprocess.run([str(BUILDBOT), "checkconfig", str(folder)], capture_output=True, text=True,
                                timeout=30, env={**os.environ, "OSCARVT_SETTINGS": str(settings)})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 2 and lines[0] == "Configuration Errors:", output
    return lines[1]


@pytest.mark.parametrize("label", ["not-utf8", "nul-byte", "deep", "huge-int-digits", "billion-laughs",
                                   "int-and-null-keys"])
def test_checkconfig_bad_file(tmp_path, label):
    folder = master_dir(tmp_path, example())
    (folder / "settings.yaml").write_bytes(SETTINGS_FILES[label])
    assert f"{folder}/settings.yaml" in checkconfig_line(folder)


@pytest.mark.parametrize("key, value", [("mail.relay", "localhost:70000"), ("workers.0.name", "hv\n1"),
                                        ("mail.from", "a@b.org\r\nBcc: c@d.org"), ("logs_port", False)])
def test_checkconfig_bad_key(tmp_path, key, value):
    folder = master_dir(tmp_path, setting(example(), key, value))
    assert f"'{key_shown(key)}" in checkconfig_line(folder)


@pytest.mark.parametrize("secret", ["worker-hv1", "www-users"])
@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_checkconfig_secret(tmp_path, secret, kind):
    folder = master_dir(tmp_path, example())
    (folder / "secrets" / secret).unlink()
    if kind == "folder":
        (folder / "secrets" / secret).mkdir()
    assert secret in checkconfig_line(folder)


@pytest.mark.parametrize("kind", NOT_A_FILE)
def test_checkconfig_settings_path(tmp_path, kind):
    settings = NOT_A_FILE[kind](tmp_path / "settings.yaml")
    assert str(settings) in checkconfig_line(master_dir(tmp_path, example()), settings)


@pytest.mark.parametrize("key, secret", [("hook", "github-webhook-secret"), ("statuses", "github-token")])
def test_checkconfig_github_secret(tmp_path, key, secret):
    folder = master_dir(tmp_path, setting(example(), f"github.{key}", True))
    path = folder / "secrets" / secret
    assert checkconfig_line(folder).strip() == (f"{folder}/settings.yaml: key 'github.{key}': no secret file {path} "
                                                "(mode 0600)")
    path.write_text("a secret")
    path.chmod(0o644)
    assert checkconfig_line(folder).strip() == (f"{path}: mode 0644 lets its group or others in; a secret must be "
                                                f"private (chmod 600 {path})")


def test_checkconfig_no_secrets_folder(tmp_path):
    folder = master_dir(tmp_path, example())
    shutil.rmtree(folder / "secrets")
    assert "secrets_dir" in checkconfig_line(folder)


@pytest.mark.parametrize("change", [{"logs_port": 8010, "logs_listen": "0.0.0.0"}, {"worker_port": 8010,
                                    "worker_listen": "::"}, {"logs_port": 9989, "logs_listen": "127.0.0.1"}])
def test_settings_two_listeners_on_one_port(tmp_path, change):
    data = {**example(), **change}
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(data))
    message = settings_error(tmp_path / "settings.yaml")
    assert "each of the master's listeners needs a port of its own" in message
    assert all(f"'{key}'" in message for key in change if key.endswith("_port")), message


def test_two_listeners_on_one_port_at_different_addresses_are_allowed(tmp_path):
    data = {**example(), "logs_port": 8010, "logs_listen": "127.0.0.2"}
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(data))
    assert load_settings(tmp_path / "settings.yaml").logs_port == 8010


# ---------------------------------------------------------------- what an earlier verb stored, shown again

GUEST_TEXT = "OSCAR said \x1b[2J\x1b]0;title\x07 and\nthen\r\x9b\u2028more"


def test_text_an_earlier_failed_verb_stored_is_shown_escaped(env, w):
    """A phase's message in state.json (it may quote OSCAR's output) reaches status, summary.txt and
    the progress lines escaped: one printable line each, the text still readable."""
    state = _state(w)
    state["phases"].append({"phase": "start-oscar", "start": 1.0, "end": 2.0, "result": "failed", "blame": "product",
                            "message": GUEST_TEXT, "seconds": 1.0, "product_seconds": 1.0})
    (w.cluster / "state.json").write_text(json.dumps(state))
    for args in (["status", "--cluster", w.cluster], ["grab-logs", "--cluster", w.cluster, "--dest", w.tmp / "logs"]):
        result = subprocess.run([sys.executable, "-m", "oscarvt", *map(str, args)], capture_output=True, text=True,
                                env=env, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines and all(line.isprintable() for line in lines), result.stdout
        if args[0] == "status":
            assert any("\\x1b[2J" in line and "\\u2028more" in line for line in lines), result.stdout
    summary = (w.tmp / "logs" / "summary.txt").read_text()
    assert all(line.isprintable() for line in summary.splitlines()), summary
    assert "OSCAR said \\x1b[2J" in summary


def test_a_progress_line_is_one_printable_line():
    out = io.StringIO()
    log.use_stream(out)
    try:
        log.progress(GUEST_TEXT + "\tend")
        log.verdict("status", GUEST_TEXT, "product")
    finally:
        log.use_stream(sys.stdout)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.isprintable() for line in lines), lines
    said = "OSCAR said \\x1b[2J\\x1b]0;title\\x07 and\\nthen\\r\\x9b\\u2028more"
    assert re.fullmatch(r"\[ *[0-9.]+s\] " + re.escape(said) + " +end", lines[0]), lines[0]  # the tab: spaces
    assert lines[1] == f"FAIL: status: product: {said}"


@pytest.mark.parametrize("folder", ["a-home", "root-like"])
def test_destroy_of_a_folder_that_is_no_cluster_touches_nothing(env, w, folder):
    """``destroy --cluster ~`` or ``/``: a disks/ folder and daemons' pidfiles in run/ are not the cluster's."""
    target = _folder(w.tmp / folder)
    _regular(_folder(target / "disks") / "thesis.qcow2")
    pidfile = _folder(target / "run") / "sshd.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # a live process that is no QEMU of a cluster
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "oscarvt", "destroy", "--cluster", str(target)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith(f"PASS: destroy: nothing to destroy at {target}: no cluster's")
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before  # not even a lock file
