"""The Buildbot configuration (``BuildmasterConfig``) built from the settings, one part per concern."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildbot import config as bbconfig
from buildbot.plugins import changes, schedulers, secrets, util, worker

from oscarvt_master.bisect import MIRRORS, bisect_builder, bisect_schedulers
from oscarvt_master.factory import BUILDER_DEFAULT, LOGS_FOLDER, build_factory, repository_login
from oscarvt_master.flakiness import MAX_REPEAT, RepeatedForce
from oscarvt_master.github import TOKEN, WEBHOOK_SECRET, github_hook, on_github, status_push
from oscarvt_master.logserver import LogServer
from oscarvt_master.reporters import mail_reporters
from oscarvt_master.retention import Janitor
from oscarvt_master.secret_files import CHANGE_HOOK_USERS, WWW_USERS, HashedPasswords, SecretFileError, check_private
from oscarvt_master.settings import BISECT_WORKER, BOOTS, DB_PASSWORD, Settings, SettingsError, load_settings


def master_config(settings_file: Path, basedir: Path) -> dict[str, Any]:
    """The whole configuration; a bad settings file is one config error naming file and key."""
    try:
        settings = load_settings(settings_file)
        secrets_dir = (basedir / settings.secrets_dir).resolve()
        if not secrets_dir.is_dir():
            raise SettingsError(f"{settings_file}: key 'secrets_dir': no such folder {secrets_dir}")
        for i, w in enumerate(settings.workers):  # Buildbot would read it only when the worker connects
            if not (secrets_dir / f"worker-{w.name}").is_file():
                raise SettingsError(f"{settings_file}: key 'workers[{i}].name': no password file "
                                    f"{secrets_dir / f'worker-{w.name}'} (the worker's password, mode 0600)")
        for i, repo in enumerate(settings.repositories):
            if repo.user is not None and not (secrets_dir / repo.password_secret).is_file():
                raise SettingsError(f"{settings_file}: key 'repositories[{i}].user': no password file "
                                    f"{secrets_dir / repo.password_secret} (mode 0600)")
        if settings.github is not None:
            for key, wanted, name in (("hook", settings.github.hook, WEBHOOK_SECRET),
                                      ("statuses", settings.github.statuses, TOKEN)):
                if wanted and not (secrets_dir / name).is_file():
                    raise SettingsError(f"{settings_file}: key 'github.{key}': no secret file {secrets_dir / name} "
                                        "(mode 0600)")
        for path in sorted(secrets_dir.iterdir()):  # SecretInAFile reads them all
            check_private(path)
        www_auth = users_file(settings_file, secrets_dir, WWW_USERS, "admins", bool(settings.admins),
                              tuple(settings.admins))
        hook_auth = users_file(settings_file, secrets_dir, CHANGE_HOOK_USERS, "change_hook", settings.change_hook)
    except (SettingsError, SecretFileError) as exc:
        raise bbconfig.ConfigErrors([str(exc)]) from None
    return {
        "title": settings.title, "titleURL": settings.url, "buildbotURL": settings.url,
        "db": database(settings, secrets_dir),
        "buildbotNetUsageData": None,
        "protocols": {"pb": {"port": listen(settings.worker_port, settings.worker_listen)}},
        "secretsProviders": [secrets.SecretInAFile(dirname=str(secrets_dir))],
        # max_builds: checked as a build starts, so two builders' requests arriving at once do not
        # both go to one worker to wait for its lock while another worker is idle
        "workers": [worker.Worker(w.name, util.Secret(f"worker-{w.name}"), max_builds=w.max_clusters)
                    for w in settings.workers] + [worker.LocalWorker(BISECT_WORKER)],  # bisect builds run there
        "change_source": change_sources(settings),
        "schedulers": all_schedulers(settings) + bisect_schedulers(settings),
        "builders": builders(settings, basedir) + [bisect_builder(settings, basedir)],
        "www": www(settings, www_auth, hook_auth),
        "services": mail(settings, basedir) + log_server(settings, basedir) + status_push(settings),
        "configurators": [Janitor(settings.log_horizon, settings.build_data_horizon, str(basedir / LOGS_FOLDER))],
    }


def database(settings: Settings, secrets_dir: Path) -> dict[str, Any]:
    """Buildbot's database. PostgreSQL goes through psycopg2, which the master's extra installs (SQLAlchemy
    2.1 would take ``postgresql://`` for psycopg 3); the user's password comes from the secret file
    db-password, if there is one, given to the driver as a Buildbot secret, never written into the URL."""
    url = settings.db_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    config: dict[str, Any] = {"db_url": url}
    if url.startswith("postgresql") and (secrets_dir / DB_PASSWORD).is_file():
        config["engine_kwargs"] = {"connect_args": {"password": util.Secret(DB_PASSWORD)}}
    return config


def change_sources(settings: Settings) -> list[Any]:
    """A poller per repository (GitPoller or SVNPoller), named after it for the poller webhook; none
    for a repository on GitHub when GitHub's webhook brings its commits."""
    found: list[Any] = []
    hooked = on_github(settings) if settings.github is not None and settings.github.hook else {}
    for repo in settings.repositories:
        if repo.name in hooked:
            continue
        if repo.vcs == "git":
            found.append(changes.GitPoller(repourl=repo.url, branches=[repo.branch], pollInterval=repo.poll_interval,
                                           workdir=f"gitpoller-{repo.name}", name=repo.name,
                                           auth_credentials=repository_login(repo), project=repo.github))
        else:
            user, password = repository_login(repo) or (None, None)
            found.append(changes.SVNPoller(repourl=repo.url, pollInterval=repo.poll_interval, name=repo.name,
                                           split_file=util.svn.split_file_alwaystrunk, svnuser=user,
                                           svnpasswd=password))
    return found


def all_schedulers(settings: Settings) -> list[Any]:
    """Per repository a commit scheduler (the builders commits build) and a nightly one (all its
    builders); one force scheduler with the build options."""
    found: list[Any] = []
    for repo in settings.repositories:
        names = [b.name for b in settings.builders if b.repository == repo.name]
        if not names:
            continue
        branch = repo.branch if repo.vcs == "git" else None
        on_commit = [b.name for b in settings.builders if b.repository == repo.name and b.commit]
        if on_commit:  # a repository on GitHub by its project, OWNER/NAME, from the webhook or the poller
            where = {"project": repo.github} if repo.github is not None else {"repository": repo.url}
            found.append(schedulers.SingleBranchScheduler(
                name=f"commit-{repo.name}", builderNames=on_commit, treeStableTimer=None,
                change_filter=util.ChangeFilter(branch=branch, **where)))
        found.append(schedulers.Nightly(name=f"nightly-{repo.name}", builderNames=names, branch=branch,
                                        hour=settings.nightly["hour"], minute=settings.nightly["minute"]))
    found.append(RepeatedForce(
        name="force", builderNames=[b.name for b in settings.builders],
        properties=[util.IntParameter(name="nodes", label="Compute nodes (0: the builder's)", default=0),
                    util.IntParameter(name="repeat", label=f"Builds of this revision (1 to {MAX_REPEAT}: flakiness)",
                                      default=1),
                    util.ChoiceStringParameter(name="boot", label="Boot method", choices=[BUILDER_DEFAULT, *BOOTS],
                                               default=BUILDER_DEFAULT),
                    util.BooleanParameter(name="keep_on_failure", label="Keep the cluster on failure",
                                          default=False)]))
    return found


def builders(settings: Settings, basedir: Path) -> list[util.BuilderConfig]:
    """The matrix: one builder per settings entry; a worker lock caps clusters per host."""
    lock = util.WorkerLock("virtual-clusters", maxCount=1,
                           maxCountForWorker={w.name: w.max_clusters for w in settings.workers})
    repos = {r.name: r for r in settings.repositories}
    mirrors = str(basedir / MIRRORS)
    return [util.BuilderConfig(
        name=b.name, workernames=b.workers, factory=build_factory(settings, b, repos[b.repository], mirrors),
        locks=[lock.access("counting")],
        defaultProperties={"distribution": b.distribution, "arch": b.arch},
        tags=[b.distribution, b.arch, b.boot]) for b in settings.builders]


def users_file(settings_file: Path, secrets_dir: Path, name: str, key: str, wanted: bool,
               required: tuple[str, ...] = ()) -> HashedPasswords | None:
    """The login check for the users in ``secrets_dir/name`` if the setting ``key`` wants one;
    each of ``required`` must have a line there."""
    if not wanted:
        return None
    path = secrets_dir / name
    if not path.exists():
        raise SettingsError(f"{settings_file}: key '{key}': {path} is missing (USER:HASH lines, a bcrypt hash "
                            "each, mode 0600)")
    auth = HashedPasswords(path)
    absent = [user for user in required if user not in auth.users]
    if absent:
        raise SettingsError(f"{settings_file}: key '{key}': {absent[0]} has no line in {path}")
    return auth


def listen(port: int, address: str) -> str:
    """A Twisted endpoint description: TCP ``port`` on ``address`` only."""
    escaped = address.replace(":", "\\:")  # an IPv6 address's colons, escaped for the description
    return f"tcp:{port}:interface={escaped}"


def www(settings: Settings, auth: HashedPasswords | None, hook_auth: HashedPasswords | None) -> dict[str, Any]:
    """The web UI: waterfall, console and grid; anyone reads, admins (www-users) control; the
    change hook, when on, takes posts from the users in change-hook-users only."""
    config: dict[str, Any] = {
        "port": listen(settings.www_port, settings.www_listen),
        "plugins": {"waterfall_view": {}, "console_view": {}, "grid_view": {},
                    "badges": {"left_text": "oscarvt"}},  # URL/plugins/badges/BUILDER.svg (or .png)
        "change_hook_dialects": github_hook(settings),
    }
    if hook_auth is not None:  # Buildbot guards all of /change_hook with it, GitHub's dialect too
        config["change_hook_dialects"]["poller"] = True
        config["change_hook_auth"] = [hook_auth]
    if auth is not None:
        config["auth"] = auth
    config["authz"] = util.Authz(
        allowRules=[util.AnyControlEndpointMatcher(role="admins")],
        roleMatchers=[util.RolesFromUsername(roles=["admins"], usernames=settings.admins)])
    return config


def log_server(settings: Settings, basedir: Path) -> list[Any]:
    """The master's own server for the uploaded logs (unless logs_port is 0)."""
    if not settings.logs_port:
        return []
    return [LogServer(port=settings.logs_port, folder=str(basedir / LOGS_FOLDER),
                      interface=settings.logs_listen)]


def mail(settings: Settings, basedir: Path) -> list[Any]:
    """Mail by blame (see ``oscarvt_master.reporters``): developers and admins."""
    if settings.mail is None:
        return []
    return mail_reporters(settings.mail, [b.name for b in settings.builders], str(basedir / LOGS_FOLDER))
