"""The ``oscarvt`` command: one verb per driver phase, plus ssh, status and profile tools.

Every verb prints progress, ends with a one-line verdict (``PASS: ...`` or
``FAIL: ...``) and exits 0 or 1. Bad input is one error line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from typing import Callable, NoReturn

from oscarvt import log
from oscarvt.cluster import ClusterDir
from oscarvt.errors import INFRASTRUCTURE, PRODUCT, InfraError, InputError, OscarvtError, from_os_error, shown
from oscarvt.masking import mask_credentials
from oscarvt.paths import flag_path
from oscarvt.phase_table import PHASES, Phase


def main(argv: list[str] | None = None) -> int:
    """Run one verb; return the exit status (0, or the failure's: see ``oscarvt.errors``)."""
    # qemu.qmp's and asyncio's own reports (a QMP reader's EOFError when QEMU quits, logged as "exception was
    # never retrieved" as the interpreter exits, after the verdict): QMP errors that matter are raised to oscarvt
    for noisy in ("qemu", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped build cleans up as after Ctrl-C
    name = "oscarvt"
    try:
        args = _parser().parse_args(argv)
        name = _verb_name(args)
        lock = getattr(args, "lock", None)
        if lock is None:
            return int(args.run(args))
        with ClusterDir(args.cluster).locked(create=lock == "create"):
            return int(args.run(args))
    except OscarvtError as exc:
        return _failed(name, exc)
    except OSError as exc:  # a path or the host that no check caught
        return _failed(name, from_os_error(exc))
    except UnicodeError as exc:
        return _failed(name, InputError(f"not UTF-8 text: {exc}"))
    except RecursionError:
        return _failed(name, InputError("input nested too deeply"))
    except KeyboardInterrupt:
        log.verdict(name, "interrupted", INFRASTRUCTURE)
        return 130
    except Exception as exc:  # noqa: BLE001 (oscarvt's own bug: one line, blamed on infrastructure, never OSCAR)
        if os.environ.get("OSCARVT_DEBUG"):
            traceback.print_exc()
        return _failed(name, InfraError(f"oscarvt's own error: {type(exc).__name__}: {exc} "
                                        "(OSCARVT_DEBUG=1 shows the traceback)"))


def _one_line(text: str) -> str:
    """An argparse ``type``: one printable line of at most 1000 characters (checked here, not in
    oscarvt.image, whose text is part of every template's recipe key)."""
    if not text.isprintable() or len(text) > 1000:
        raise argparse.ArgumentTypeError(f"must be one printable line of at most 1000 characters, not {shown(text)}")
    return text


def _verb_name(args: argparse.Namespace) -> str:
    """The verb as the verdict names it: ``boot-headnode``, ``image build``, ..."""
    return " ".join(filter(None, [args.verb, getattr(args, "tool", None)]))


def _failed(verb: str, exc: OscarvtError) -> int:
    log.verdict(verb, " ".join(str(exc).split("\n")), exc.blame, exc.vm, exc.logs)
    return exc.exit_status


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one ``FAIL:`` line like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _phase_verb(phase: Phase) -> Callable[[argparse.Namespace], int]:
    """Run ``phase`` with the command line's values; print its verdict."""
    def run(args: argparse.Namespace) -> int:
        log.verdict(phase.name, phase.call(ClusterDir(args.cluster), vars(args)))
        return 0
    return run


def _verb(function: Callable[[argparse.Namespace], str]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        verb = _verb_name(args)
        log.verdict(verb, function(args).removeprefix(f"{verb}: "))
        return 0
    return run


def _reap(args: argparse.Namespace) -> str:
    from oscarvt.phases.host import reap
    return reap(args.under, args.stop_drivers)


def _status(args: argparse.Namespace) -> int:
    from oscarvt.status import cluster_status, format_status, vm_label
    if args.json:
        log.use_stream(sys.stderr)
    status = cluster_status(ClusterDir(args.cluster))
    print(mask_credentials(json.dumps(status, indent=2) if args.json else format_status(status)), flush=True)
    dead = [vm_label(name, vm) for name, vm in status["vms"].items() if vm["state"] == "dead"]
    running = sum(vm["state"] == "running" for vm in status["vms"].values())
    if dead:
        raise InfraError(f"{', '.join(dead)} died ({running}/{len(status['vms'])} VMs running)")
    log.verdict("status", f"{running}/{len(status['vms'])} VMs running")
    return 0


def _ssh(args: argparse.Namespace) -> int:
    from oscarvt.access import open_vm
    log.use_stream(sys.stderr)
    words = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = " ".join(words).strip()
    if not command:
        raise InputError("give a command after '--', e.g. oscarvt ssh --cluster DIR headnode -- uptime")
    cluster = ClusterDir(args.cluster)
    conn, opened = open_vm(cluster, cluster.load(), args.vm)
    def output(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    try:
        status = conn.run(command, output, timeout=None)  # a person's command: theirs to stop
    finally:
        for c in opened:
            c.close()
    log.verdict("ssh", f"{conn.label}: '{command}' exited {status}", None if status == 0 else PRODUCT)
    return status


def _profile_validate(args: argparse.Namespace) -> str:
    from oscarvt.profile import dtd_path, validate_file
    for path in args.files:
        validate_file(path)
        log.progress(f"{path}: valid")
    return f"profile validate: {len(args.files)} profile(s) valid under V2M's DTD ({dtd_path()}) and V2M's values"


def _profile_render(args: argparse.Namespace) -> int:
    from oscarvt.backends.render import render
    log.use_stream(sys.stderr)
    print(render(args.file, args.backend), end="", flush=True)
    log.verdict("profile render", f"{args.file} as {args.backend} configuration")
    return 0


def _image_build(args: argparse.Namespace) -> str:
    import yaml

    from oscarvt.image import build_template
    log.use_stream(sys.stderr)  # stdout carries the spec lines alone: `image build > part.yaml` works
    if args.authorized_key is not None and not args.authorized_key.is_file():
        raise InputError(f"--authorized-key: no such file {args.authorized_key}")
    template, cached = build_template(args.suite, args.password, args.authorized_key, args.size, args.force,
                                      args.arch, tuple(args.mirror))
    data = template.spec_data()
    print(f"# The {template.suite} {template.arch} headnode template in {template.folder}; a cluster spec's lines\n"
          f"# (or, on this host: template: {{suite: {template.suite}, arch: {template.arch}}}):")
    print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000), end="")
    if "ssh" not in data:
        print("# ssh: give the private key of --authorized-key, or the --password, as ssh.key or ssh.password")
    sys.stdout.flush()
    return f"image build: {template.suite} {template.arch} {template.disk} ({'from the cache' if cached else 'built'})"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="oscarvt", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, run: Callable[[argparse.Namespace], int], help: str,
             lock: str | None = "existing") -> argparse.ArgumentParser:
        """A verb on ``--cluster DIR``; ``lock``: hold the folder's lock ("create": make it first)."""
        sub = verbs.add_parser(name, help=help, description=help)
        sub.add_argument("--cluster", type=flag_path, required=True, metavar="DIR",
                         help="the cluster's folder (state, profiles, disks, consoles)")
        sub.set_defaults(run=run, lock=lock)
        return sub

    for phase in PHASES.values():
        sub = verb(phase.name, _phase_verb(phase), phase.help, phase.lock)
        for option in phase.options:
            sub.add_argument(*option.flags, **option.settings)
    sub = verbs.add_parser("reap", help="destroy the clusters under a folder that interrupted builds left running",
                           description="Destroy every cluster under DIR that no person keeps (a worker runs this "
                           "when it starts).")
    sub.add_argument("--under", type=flag_path, required=True, metavar="DIR", help="e.g. the worker's folder")
    sub.add_argument("--stop-drivers", action="store_true",
                     help="stop an oscarvt still working on one of them (a worker's start: its builds are gone)")
    sub.set_defaults(run=_verb(_reap))
    sub = verb("ssh", _ssh, "run a command on a VM (nodes through the headnode)", lock=None)
    sub.add_argument("vm", metavar="VM", help="VM name, e.g. headnode or oscarnode1, or OSCAR's name for a node "
                     "(once wait-for-nodes has seen it report; VM names come first)")
    sub.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    sub = verb("status", _status, "show each VM's state and the phases", lock=None)
    sub.add_argument("--json", action="store_true", help="print the status as JSON")

    image = verbs.add_parser("image", help="build headnode templates")
    tools = image.add_subparsers(dest="tool", required=True, metavar="TOOL")
    sub = tools.add_parser("build", help="build a Debian headnode template (cached by recipe)",
                           description="Build a Debian headnode template (qcow2, kernel, initrd), cached by recipe. "
                           "Prints the spec lines that use it (YAML, on stdout; progress and verdict on stderr).")
    sub.add_argument("--suite", default="bookworm", help="Debian suite: bullseye, bookworm (default), trixie")
    sub.add_argument("--arch", default="amd64", help="amd64 (default) or arm64 (on an amd64 host: needs "
                     "qemu-user-static and binfmt-support, and takes minutes more)")
    sub.add_argument("--mirror", action="append", default=[], metavar="URL|LINE", type=_one_line,
                     help="a Debian mirror URL or a 'deb URL SUITE COMPONENTS' line, repeatable (default: "
                     "deb.debian.org with the suite's -updates and -security)")
    sub.add_argument("--password", help="root's password (default: key login only)")
    sub.add_argument("--authorized-key", type=flag_path, metavar="FILE",
                     help="public key for root (default: a key pair made beside the template)")
    sub.add_argument("--size", default="8G", help="file system size, sparse (default: 8G)")
    sub.add_argument("--force", action="store_true", help="rebuild even if the cache has this recipe")
    sub.set_defaults(run=_verb(_image_build))

    profile = verbs.add_parser("profile", help="check and render V2M profiles")
    tools = profile.add_subparsers(dest="tool", required=True, metavar="TOOL")
    sub = tools.add_parser("validate", help="check profiles as V2M does: DOCTYPE, V2M's DTD, then the values")
    sub.add_argument("files", type=flag_path, nargs="+", metavar="FILE")
    sub.set_defaults(run=_verb(_profile_validate))
    sub = tools.add_parser("render", help="print the hypervisor configuration of a profile")
    sub.add_argument("--backend", choices=["qemu", "libvirt", "xen"], required=True)
    sub.add_argument("file", type=flag_path, metavar="FILE")
    sub.set_defaults(run=_profile_render)
    return parser
