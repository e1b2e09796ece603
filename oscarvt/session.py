"""A phase's session: its cluster folder and state, with the spec and profiles read once.

A phase opens one with ``Session.phase(cluster, NAME)`` (``ClusterDir.phase`` with a session on
the state it yields) and hands it to the functions it calls. The spec stored in the state is
parsed and checked when it is first used, each VM's profile when it is first used; both are
kept for the rest of the phase. A profile the phase rewrites (``write_profile``) is read
again from its file the next time it is used.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property
from typing import Iterator

from oscarvt.backends.qemu import QemuVm
from oscarvt.cluster import ClusterDir
from oscarvt.profile import Profile, write_profile
from oscarvt.spec import ClusterSpec
from oscarvt.state import ClusterState


class Session:
    """The cluster folder and state one phase works on, with what it reads from them kept."""

    def __init__(self, cluster: ClusterDir, state: ClusterState) -> None:
        self.cluster = cluster
        self.state = state
        self._profiles: dict[str, Profile] = {}

    @classmethod
    @contextmanager
    def phase(cls, cluster: ClusterDir, name: str) -> Iterator[Session]:
        """The phase ``name`` on ``cluster`` (``ClusterDir.phase``: its record in the state) with a session."""
        with cluster.phase(name) as state:
            yield cls(cluster, state)

    @cached_property
    def spec(self) -> ClusterSpec:
        """The spec the cluster was made from (``ClusterDir.spec``), parsed on first use."""
        return self.cluster.spec(self.state)

    def profile(self, vm: str) -> Profile:
        """The profile of ``vm`` (``ClusterDir.profile``), read on first use."""
        if vm not in self._profiles:
            self._profiles[vm] = self.cluster.profile(vm)
        return self._profiles[vm]

    def vm(self, name: str) -> QemuVm:
        """The VM ``name`` as its QEMU process (``ClusterDir.vm``)."""
        return self.cluster.vm(name)

    def write_profile(self, vm: str, profile: Profile) -> None:
        """Write ``profile`` as the profile of ``vm``; the next use reads it again from its file."""
        self._profiles.pop(vm, None)
        write_profile(profile, self.cluster.profile_path(vm))
