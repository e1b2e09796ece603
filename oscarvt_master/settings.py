"""The master's settings file (YAML): what master.cfg builds the Buildbot configuration from.

Every key is documented in docs/master.md ("Settings") and in master.example.yaml.
Secrets (worker and admin passwords) are never in this file: they are files in
``secrets_dir`` (mode 0600), read through Buildbot's SecretInAFile. A bad file gives one
error naming the file and the key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from oscarvt import checks
from oscarvt.arches import ARCHES
from oscarvt.errors import InputError, OscarvtError, shown
from oscarvt.image import SUITE
from oscarvt.spec import read_yaml, spec_from_dict
from oscarvt_master.matrix import AXES, Cell, commit_cells, expand

BOOTS = ("cdrom", "network")
BISECT = "bisect"  # the bisect builder's name (oscarvt_master.bisect): no builder of the settings may take it
BISECT_WORKER = "bisector"  # the master's own worker for it: no worker of the settings may take it
DB_PASSWORD = "db-password"  # the secret file with the PostgreSQL user's password (if it needs one)
MAIL_MODES = ("all", "failing", "passing", "problem", "warnings", "exception", "cancelled", "change")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_GITHUB_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+")  # OWNER/NAME
_DURATION = re.compile(r"([0-9]{1,6})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HORIZONS = (timedelta(seconds=1), timedelta(days=3650))  # bounds of log_horizon and build_data_horizon


class SettingsError(InputError):
    """A settings file that cannot be used; the message names the file and the key."""


# The checks every value goes through (oscarvt.checks), raising SettingsError.
_mapping = partial(checks.mapping, error=SettingsError)
_list = partial(checks.listed, error=SettingsError)
_int = partial(checks.whole_number, error=SettingsError)
_text = partial(checks.text, error=SettingsError, blank=False)
_no_unknown = partial(checks.no_unknown, error=SettingsError)


@dataclass(frozen=True)
class Repository:
    name: str
    url: str
    vcs: str = "git"
    branch: str = "main"
    poll_interval: int = 60
    user: str | None = None  # with a password in secrets_dir/repository-NAME (never in the URL)
    github: str | None = None  # OWNER/NAME on GitHub: its push webhook and commit statuses

    @property
    def password_secret(self) -> str:
        """The secret file (in secrets_dir) with the password of ``user``."""
        return f"repository-{self.name}"


@dataclass(frozen=True)
class Worker:
    name: str
    max_clusters: int = 1  # virtual clusters this host runs at once (a worker lock)
    arches: tuple[str, ...] = ("amd64",)  # the architectures of the templates this host has
    kvm: bool = False      # whether this host's guests run under KVM (specs with accel: kvm need it)

    def runs(self, arch: str, spec: dict[str, Any]) -> bool:
        """Whether this host can run a cluster of ``arch`` with ``spec``."""
        return arch in self.arches and (spec.get("accel") != "kvm" or self.kvm)


@dataclass(frozen=True)
class Builder:
    name: str
    repository: str
    workers: list[str]
    spec: dict[str, Any]  # an oscarvt cluster spec; nodes.count and nodes.boot come from below
    distribution: str = "debian-12"
    arch: str = "amd64"
    nodes: int = 2
    boot: str = "cdrom"
    commit: bool = True  # whether commits build it (the nightly builds every builder)


@dataclass(frozen=True)
class Mail:
    relay: str = "localhost:25"
    sender: str = "oscarvt@localhost.localdomain"
    to: list[str] = field(default_factory=list)      # the developers: the product's failures
    admins: list[str] = field(default_factory=list)  # infrastructure and input trouble
    mode: list[str] = field(default_factory=lambda: ["failing", "warnings", "exception"])


@dataclass(frozen=True)
class GitHub:
    hook: bool = False      # POST /change_hook/github, signed with secrets_dir/github-webhook-secret
    statuses: bool = False  # a commit status per builder, with the token in secrets_dir/github-token
    api_url: str = "https://api.github.com"  # GitHub Enterprise: https://HOST/api/v3


@dataclass(frozen=True)
class Settings:
    title: str
    url: str
    repositories: list[Repository]
    builders: list[Builder]
    workers: list[Worker]
    www_port: int = 8010
    worker_port: int = 9989
    db_url: str = "sqlite:///state.sqlite"
    oscarvt: str = "oscarvt"
    secrets_dir: str = "secrets"
    nightly: dict[str, int] = field(default_factory=lambda: {"hour": 2, "minute": 0})
    admins: list[str] = field(default_factory=list)
    mail: Mail | None = None
    logs_port: int = 8011        # the master serves public_html/logs here (0: it does not)
    logs_url: str | None = None  # where public_html/logs is served (default: the master, logs_port)
    retries: int = 1             # runs again of a build that failed for infrastructure trouble
    www_listen: str = "127.0.0.1"     # the addresses the web UI, the workers' port and the logs
    worker_listen: str = "127.0.0.1"  # listen on: this host only, unless the admin says otherwise
    logs_listen: str = "127.0.0.1"
    change_hook: bool = False    # POST /change_hook/poller (secrets_dir/change-hook-users may post)
    github: GitHub | None = None
    log_horizon: timedelta | None = None         # step logs (and public_html/logs) older than this go
    build_data_horizon: timedelta | None = None  # build data older than this goes (None: kept)


def load_settings(path: Path) -> Settings:
    """Read and check the settings file; a SettingsError names the file and key."""
    data = read_yaml(path, "the settings", SettingsError)
    try:
        return settings_from_dict(data)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None


def settings_from_dict(data: Any) -> Settings:
    top = _mapping(data, "settings")
    known = {"title", "url", "repositories", "builders", "matrix", "workers", "www_port", "worker_port", "db_url",
             "oscarvt", "secrets_dir", "nightly", "admins", "mail", "logs_port", "logs_url", "retries",
             "www_listen", "worker_listen", "logs_listen", "change_hook", "github", "log_horizon",
             "build_data_horizon"}
    _no_unknown(top, known, "")
    for key in ("title", "url", "repositories", "workers"):
        if key not in top:
            raise SettingsError(f"key '{key}' is required")
    if "builders" not in top and "matrix" not in top:
        raise SettingsError("key 'matrix' or 'builders' is required")
    repositories = [_repository(r, f"repositories[{i}]")
                    for i, r in enumerate(_list(top["repositories"], "repositories"))]
    workers = [_worker(w, f"workers[{i}]") for i, w in enumerate(_list(top["workers"], "workers"))]
    builders = [_builder(b, f"builders[{i}]", repositories, workers)
                for i, b in enumerate(_list(top.get("builders", []), "builders"))]
    if top.get("matrix") is not None:
        builders += _matrix(top["matrix"], repositories, workers)
    for kind, items in (("repositories", repositories), ("workers", workers), ("builders", builders)):
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise SettingsError(f"key '{kind}': names must be different ({', '.join(names)})")
        taken = {"workers": BISECT_WORKER, "builders": BISECT}.get(kind)
        if taken in names:
            raise SettingsError(f"key '{kind}': the name {taken!r} is oscarvt's own (the bisection's)")
    nightly = _mapping(top.get("nightly", {"hour": 2, "minute": 0}), "nightly")
    _no_unknown(nightly, {"hour", "minute"}, "nightly.")
    hour, minute = _int(nightly.get("hour", 2), "nightly.hour"), _int(nightly.get("minute", 0), "nightly.minute")
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise SettingsError(f"key 'nightly' must be a time of day, not {hour}:{minute:02d}")
    settings = Settings(
        title=_text(top["title"], "title"), url=_text(top["url"], "url"), repositories=repositories,
        builders=builders, workers=workers, www_port=_port(top.get("www_port", 8010), "www_port"),
        worker_port=_port(top.get("worker_port", 9989), "worker_port"),
        db_url=_db_url(top.get("db_url", "sqlite:///state.sqlite")),
        oscarvt=_text(top.get("oscarvt", "oscarvt"), "oscarvt"),
        secrets_dir=_text(top.get("secrets_dir", "secrets"), "secrets_dir"),
        nightly={"hour": hour, "minute": minute},
        admins=[_name(a, f"admins[{i}]") for i, a in enumerate(_list(top.get("admins", []), "admins"))],
        mail=_mail(top["mail"]) if top.get("mail") is not None else None,
        logs_port=_logs_port(top.get("logs_port", 8011)),
        logs_url=_text(top["logs_url"], "logs_url") if top.get("logs_url") is not None else None,
        retries=_retries(top.get("retries", 1)),
        www_listen=_address_to_listen(top.get("www_listen", "127.0.0.1"), "www_listen"),
        worker_listen=_address_to_listen(top.get("worker_listen", "127.0.0.1"), "worker_listen"),
        logs_listen=_address_to_listen(top.get("logs_listen", "127.0.0.1"), "logs_listen"),
        change_hook=_bool(top.get("change_hook", False), "change_hook"),
        github=_github(top["github"], repositories) if top.get("github") is not None else None,
        log_horizon=_horizon(top.get("log_horizon"), "log_horizon"),
        build_data_horizon=_horizon(top.get("build_data_horizon"), "build_data_horizon"))
    _check_listeners(settings)
    return settings


def _check_listeners(settings: Settings) -> None:
    """Refuse two of the master's listeners (web UI, workers' port, logs) on one port of one address:
    the second would fail to start, after the first took the port."""
    listeners = [("www_port", settings.www_port, "www_listen", settings.www_listen),
                 ("worker_port", settings.worker_port, "worker_listen", settings.worker_listen)]
    if settings.logs_port:
        listeners.append(("logs_port", settings.logs_port, "logs_listen", settings.logs_listen))
    for i, (key, port, where, address) in enumerate(listeners):
        for other, other_port, other_where, other_address in listeners[:i]:
            if port == other_port and _overlap(ipaddress.ip_address(address), ipaddress.ip_address(other_address)):
                raise SettingsError(f"key '{key}': {port} is key '{other}' too ({other_where} {other_address}, "
                                    f"{where} {address}); each of the master's listeners needs a port of its own")


def _overlap(one: ipaddress.IPv4Address | ipaddress.IPv6Address, two: ipaddress.IPv4Address | ipaddress.IPv6Address
             ) -> bool:
    """Whether listening on both addresses takes one port twice: the same address, or an "all addresses"
    one of the same family (Linux's :: takes IPv4's port too)."""
    if one == two:
        return True
    if one.is_unspecified and (one.version == two.version or one.version == 6):
        return True
    return two.is_unspecified and (two.version == one.version or two.version == 6)


def _github(raw: Any, repositories: list[Repository]) -> GitHub:
    values = _mapping(raw, "github")
    _no_unknown(values, {"hook", "statuses", "api_url"}, "github.")
    api_url = _text(values.get("api_url", "https://api.github.com"), "github.api_url").rstrip("/")
    if urlsplit(api_url).scheme not in ("https", "http") or not urlsplit(api_url).hostname:
        raise SettingsError(f"key 'github.api_url' must be an http(s) URL, not {shown(api_url)}")
    _no_password(api_url, "github.api_url", "the token goes in the secret file github-token")
    found = GitHub(_bool(values.get("hook", False), "github.hook"), _bool(values.get("statuses", False),
                                                                           "github.statuses"), api_url)
    if (found.hook or found.statuses) and not any(r.github for r in repositories):
        raise SettingsError("key 'github': no repository says where it is on GitHub (repositories[].github: "
                            "OWNER/NAME)")
    return found


def _horizon(raw: Any, key: str) -> timedelta | None:
    """A duration such as 90d, 12w, 36h (s, m, h, d, w), within HORIZONS; None keeps everything."""
    if raw is None:
        return None
    match = _DURATION.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise SettingsError(f"key '{key}' must be a duration such as 30d (a number and one of s, m, h, d, w), "
                            f"not {shown(raw)}")
    horizon = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if not HORIZONS[0] <= horizon <= HORIZONS[1]:
        raise SettingsError(f"key '{key}' must be from 1s to 3650d, not {shown(raw)}")
    return horizon


def _address_to_listen(raw: Any, key: str) -> str:
    """An IP address of this host to listen on (0.0.0.0 or :: for all, which the admin must say)."""
    text = _text(raw, key)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise SettingsError(f"key '{key}' must be an IP address to listen on (127.0.0.1, ::1, 0.0.0.0, ...), "
                            f"not {shown(text)}") from None


def _bool(raw: Any, key: str) -> bool:
    if not isinstance(raw, bool):
        raise SettingsError(f"key '{key}' must be true or false, not {shown(raw)}")
    return raw


def _logs_port(raw: Any) -> int:
    port = _int(raw, "logs_port")
    return 0 if port == 0 else _port(port, "logs_port")


def _retries(raw: Any) -> int:
    retries = _int(raw, "retries")
    if not 0 <= retries <= 10:
        raise SettingsError(f"key 'retries' must be 0 to 10, not {shown(retries)}")
    return retries


def _repository(raw: Any, key: str) -> Repository:
    values = _mapping(raw, key)
    _no_unknown(values, {"name", "url", "vcs", "branch", "poll_interval", "user", "github"}, f"{key}.")
    vcs = values.get("vcs", "git")
    if vcs not in ("git", "svn"):
        raise SettingsError(f"key '{key}.vcs' must be git or svn, not {shown(vcs)}")
    interval = _int(values.get("poll_interval", 60), f"{key}.poll_interval")
    if interval < 1:
        raise SettingsError(f"key '{key}.poll_interval' must be at least 1 second")
    name = _name(values.get("name"), f"{key}.name")
    branch = _text(values.get("branch", "main"), f"{key}.branch")
    if branch.startswith("-"):
        raise SettingsError(f"key '{key}.branch' must not start with '-' (git would take it for an option)")
    user = _name(values["user"], f"{key}.user") if values.get("user") is not None else None
    github = _github_repository(values["github"], f"{key}.github") if values.get("github") is not None else None
    if github is not None and vcs != "git":
        raise SettingsError(f"key '{key}.github': a repository on GitHub is a git repository (vcs: git)")
    return Repository(name, _repository_url(values.get("url"), f"{key}.url", name), vcs, branch, interval, user,
                      github)


def _github_repository(raw: Any, key: str) -> str:
    text = _text(raw, key)
    if not _GITHUB_REPO.fullmatch(text) or text.endswith((".git", "/.", "/..")):
        raise SettingsError(f"key '{key}' must be OWNER/NAME as GitHub spells it (oscar-cluster/oscar), "
                            f"not {shown(text)}")
    return text


def _repository_url(raw: Any, key: str, name: str) -> str:
    """A repository URL or path without a password in it (it would reach logs, pages and mail)."""
    url = _text(raw, key)
    if url.startswith("-"):
        raise SettingsError(f"key '{key}' must not start with '-' (git and svn would take it for an option)")
    _no_password(url, key, f"give the user as '{key.rsplit('.', 1)[0]}.user' and the password in the secret "
                           f"file repository-{name}")
    return url


def _no_password(url: str, key: str, instead: str) -> None:
    """Refuse a URL with a password in it (it would reach logs, pages and mail); ``instead`` says where it goes."""
    try:
        has_password = urlsplit(url).password is not None
    except ValueError:
        raise SettingsError(f"key '{key}' is not a URL or path") from None
    if has_password:
        raise SettingsError(f"key '{key}' holds a password, which would be shown in logs, pages and mail: {instead}")


def _worker(raw: Any, key: str) -> Worker:
    values = _mapping(raw, key)
    if "password" in values:
        name = values.get("name")
        raise SettingsError(f"key '{key}.password': passwords go in the secrets folder "
                            f"(file worker-{name if isinstance(name, str) and _NAME.fullmatch(name) else 'NAME'}), "
                            "never in this file")
    _no_unknown(values, {"name", "max_clusters", "arches", "kvm"}, f"{key}.")
    count = _int(values.get("max_clusters", 1), f"{key}.max_clusters")
    if count < 1:
        raise SettingsError(f"key '{key}.max_clusters' must be at least 1")
    arches = tuple(_choices(values.get("arches", ["amd64"]), tuple(ARCHES), f"{key}.arches"))
    if not arches:
        raise SettingsError(f"key '{key}.arches' must name at least one of {', '.join(ARCHES)}")
    return Worker(_name(values.get("name"), f"{key}.name"), count, arches, _bool(values.get("kvm", False),
                                                                                f"{key}.kvm"))


def _choices(raw: Any, allowed: tuple[str, ...], key: str) -> list[str]:
    """A list of values from ``allowed``, each once."""
    values = _list(raw, key)
    for value in values:
        if value not in allowed:
            raise SettingsError(f"key '{key}': {shown(value)} is not one of {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise SettingsError(f"key '{key}' names a value twice")
    return values


def _matrix(raw: Any, repositories: list[Repository], workers: list[Worker]) -> list[Builder]:
    """The builders of the ``matrix`` section: one per cell (see ``oscarvt_master.matrix``)."""
    values = _mapping(raw, "matrix")
    _no_unknown(values, {"repository", "suites", "arches", "boots", "exclude", "commit", "nodes", "spec"}, "matrix.")
    repository = _text(values.get("repository"), "matrix.repository")
    if repository not in [r.name for r in repositories]:
        raise SettingsError(f"key 'matrix.repository': no repository named {shown(repository)}")
    suites = _list(values.get("suites", ["bookworm"]), "matrix.suites")
    for suite in suites:
        if not isinstance(suite, str) or not SUITE.fullmatch(suite):
            raise SettingsError(f"key 'matrix.suites': {shown(suite)} is not a Debian suite name like bookworm")
    arches = _choices(values.get("arches", ["amd64"]), tuple(ARCHES), "matrix.arches")
    boots = _choices(values.get("boots", ["cdrom"]), BOOTS, "matrix.boots")
    exclude = _patterns(values.get("exclude", []), "matrix.exclude")
    cells = expand(suites, arches, boots, exclude)
    if not cells:
        raise SettingsError("key 'matrix.exclude' leaves no cell to build")
    chosen = _patterns(values["commit"], "matrix.commit") if values.get("commit") is not None else None
    for i, pattern in enumerate(chosen or []):
        if not any(cell.matches(pattern) for cell in cells):
            raise SettingsError(f"key 'matrix.commit[{i}]' matches no cell of the matrix")
    on_commit = commit_cells(cells, chosen)
    nodes = _int(values.get("nodes", 2), "matrix.nodes")
    if not 1 <= nodes <= 250:
        raise SettingsError(f"key 'matrix.nodes' must be 1 to 250, not {shown(nodes)}")
    base = _mapping(values.get("spec", {}), "matrix.spec")
    if "template" in base:
        raise SettingsError("key 'matrix.spec.template': the matrix sets the template of each cell (suite, arch)")
    return [_cell_builder(cell, repository, base, nodes, cell.name in on_commit, workers) for cell in cells]


def _cell_builder(cell: Cell, repository: str, base: dict[str, Any], nodes: int, commit: bool,
                  workers: list[Worker]) -> Builder:
    spec = {**base, "template": {"suite": cell.suite, "arch": cell.arch}}
    try:
        spec_from_dict(spec, Path("/"), check_files=False)
    except OscarvtError as exc:
        raise SettingsError(f"key 'matrix.spec': {exc}") from None
    able = [w.name for w in workers if w.runs(cell.arch, spec)]
    if not able:
        raise SettingsError(f"key 'matrix': no worker runs the cell {cell.name} "
                            f"(workers[].arches{', kvm' if spec.get('accel') == 'kvm' else ''})")
    return Builder(cell.name, repository, able, spec, cell.distribution, cell.arch, nodes, cell.boot, commit)


def _patterns(raw: Any, key: str) -> list[dict[str, str]]:
    """Cell patterns: mappings of some of suite, arch, boot to a value."""
    patterns = []
    for i, item in enumerate(_list(raw, key)):
        pattern = _mapping(item, f"{key}[{i}]")
        _no_unknown(pattern, set(AXES), f"{key}[{i}].")
        if not pattern:
            raise SettingsError(f"key '{key}[{i}]' must name at least one of {', '.join(AXES)}")
        patterns.append({axis: _text(value, f"{key}[{i}].{axis}") for axis, value in pattern.items()})
    return patterns


def _builder(raw: Any, key: str, repositories: list[Repository], workers: list[Worker]) -> Builder:
    values = _mapping(raw, key)
    _no_unknown(values, {"name", "repository", "workers", "spec", "distribution", "arch", "nodes", "boot"}, f"{key}.")
    repository = _text(values.get("repository"), f"{key}.repository")
    if repository not in [r.name for r in repositories]:
        raise SettingsError(f"key '{key}.repository': no repository named {shown(repository)}")
    names = [_text(w, f"{key}.workers") for w in _list(values.get("workers"), f"{key}.workers")]
    unknown = [n for n in names if n not in [w.name for w in workers]]
    if not names or unknown:
        raise SettingsError(f"key '{key}.workers' must name workers from 'workers' (unknown: {', '.join(unknown)})")
    boot = values.get("boot", "cdrom")
    if boot not in BOOTS:
        raise SettingsError(f"key '{key}.boot' must be one of {', '.join(BOOTS)}, not {shown(boot)}")
    nodes = _int(values.get("nodes", 2), f"{key}.nodes")
    if not 1 <= nodes <= 250:
        raise SettingsError(f"key '{key}.nodes' must be 1 to 250, not {shown(nodes)}")
    spec = _mapping(values.get("spec"), f"{key}.spec")
    try:
        checked = spec_from_dict(spec, Path("/"), check_files=False)
    except OscarvtError as exc:
        raise SettingsError(f"key '{key}.spec': {exc}") from None
    arch = checked.template.arch
    if values.get("arch", arch) != arch:
        raise SettingsError(f"key '{key}.arch' is {shown(values['arch'])}, but its spec's template.arch is {arch}")
    for worker in workers:
        if worker.name in names and not worker.runs(arch, spec):
            raise SettingsError(f"key '{key}.workers': {worker.name} does not run {arch} clusters"
                                f"{' under KVM' if spec.get('accel') == 'kvm' else ''} (its arches: "
                                f"{', '.join(worker.arches)}{'' if worker.kvm else ', no kvm'})")
    return Builder(_name(values.get("name"), f"{key}.name"), repository, names, spec,
                   _text(values.get("distribution", "debian-12"), f"{key}.distribution"), arch, nodes, boot)


def _mail(raw: Any) -> Mail:
    values = _mapping(raw, "mail")
    _no_unknown(values, {"relay", "from", "to", "admins", "mode"}, "mail.")
    relay = _text(values.get("relay", "localhost:25"), "mail.relay")
    if not re.fullmatch(r"[^:\s]+:[0-9]{1,5}", relay) or not 1 <= int(relay.rsplit(":", 1)[1]) <= 65535:
        raise SettingsError(f"key 'mail.relay' must be HOST:PORT with a port from 1 to 65535, not {shown(relay)}")
    to = [_address(a, f"mail.to[{i}]") for i, a in enumerate(_list(values.get("to"), "mail.to"))]
    if not to:
        raise SettingsError("key 'mail.to' needs at least one address")
    mode = [_text(m, "mail.mode") for m in _list(values.get("mode", ["failing", "warnings", "exception"]), "mail.mode")]
    bad = [m for m in mode if m not in MAIL_MODES]
    if bad:
        raise SettingsError(f"key 'mail.mode': {shown(bad[0])} is not one of {', '.join(MAIL_MODES)}")
    admins = [_address(a, f"mail.admins[{i}]") for i, a in enumerate(_list(values.get("admins", []), "mail.admins"))]
    return Mail(relay, _address(values.get("from", "oscarvt@localhost.localdomain"), "mail.from"), to, admins, mode)


def _db_url(value: Any) -> str:
    url = _text(value, "db_url")
    if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg2://")):
        raise SettingsError(f"key 'db_url' must be a sqlite:// or postgresql:// URL, not {shown(url)}")
    _no_password(url, "db_url", f"give the user in the URL and the password in the secret file {DB_PASSWORD}")
    return url


def _address(value: Any, key: str) -> str:
    text = _text(value, key)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise SettingsError(f"key '{key}' is not a mail address with a dotted domain: {shown(text)}")
    return text


def _name(raw: Any, key: str) -> str:
    text = _text(raw, key)
    if not _NAME.fullmatch(text):
        raise SettingsError(f"key '{key}' must be a name (letters, digits, . _ -), not {shown(text)}")
    return text


def _port(raw: Any, key: str) -> int:
    port = _int(raw, key)
    if not 1 <= port <= 65535:
        raise SettingsError(f"key '{key}' must be a TCP port, not {shown(port)}")
    return port


