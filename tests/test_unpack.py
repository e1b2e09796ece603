"""What a guest sends, unpacked on the host (``oscarvt.unpack``): hostile tar streams, made here
as a guest's tar would send them, write nothing outside the copy and refuse each bad entry by name.

Names the host cannot take (too long, too deep) are refused one by one and the copy goes on; too
many entries stop it; the host's own trouble writing is infrastructure, never the guest's bad input.
grab-logs writes each refusal, escaped, into ``missing.txt`` (here through ``oscarvt.ssh``'s copy
with the SSH channel replaced by the crafted bytes).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, cast

import paramiko
import pytest

from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, shown
from oscarvt.phases import logs
from oscarvt.ssh import Connection
from oscarvt.state import ClusterState, Vm
from oscarvt.unpack import (
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_PATH,
    NAME_MAX,
    DamagedStream,
    EmptyStream,
    HostCannotWrite,
    unpack,
)


def stream(*entries: tuple[str, bytes | None, bytes]) -> io.BytesIO:
    """A tar stream of (name, tar type, data) entries; type None: a regular file."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, kind, body in entries:
            info = tarfile.TarInfo(name)
            if kind is None:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            else:
                info.type = kind
                info.linkname = body.decode()
                tar.addfile(info)
    data.seek(0)
    return data


def everything_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_a_hostile_stream_writes_only_the_regular_files_under_the_copied_name(tmp_path):
    dest = tmp_path / "logs"
    dest.mkdir()
    hostile = stream(("oscar/ok.log", None, b"fine\n"), ("oscar/sub", tarfile.DIRTYPE, b""),
                     ("oscar/sub/deeper.log", None, b"also fine\n"),
                     ("../escape", None, b"x"), ("/tmp/absolute", None, b"x"), ("oscar/../../escape2", None, b"x"),
                     ("oscar/shadow", tarfile.SYMTYPE, b"/etc/shadow"), ("oscar/hard", tarfile.LNKTYPE, b"/etc/passwd"),
                     ("oscar/tty", tarfile.CHRTYPE, b""), ("oscar/fifo", tarfile.FIFOTYPE, b""),
                     ("other/x", None, b"x"))
    result = unpack(hostile, dest, "oscar")
    assert everything_under(tmp_path) == {"logs", "logs/oscar", "logs/oscar/ok.log", "logs/oscar/sub",
                                          "logs/oscar/sub/deeper.log"}
    assert (dest / "oscar" / "ok.log").read_bytes() == b"fine\n"
    assert (result.files, result.size, result.stopped) == (2, 15, False)
    assert result.refused == [
        "'../escape': not under the copied path (absolute, '..' or another name)",
        "'/tmp/absolute': not under the copied path (absolute, '..' or another name)",
        "'oscar/../../escape2': not under the copied path (absolute, '..' or another name)",
        "'oscar/shadow': a link (to '/etc/shadow')",
        "'oscar/hard': a link (to '/etc/passwd')",
        "'oscar/tty': not a regular file or folder (device, FIFO, ...)",
        "'oscar/fifo': not a regular file or folder (device, FIFO, ...)",
        "'other/x': not under the copied path (absolute, '..' or another name)",
    ]


def test_a_link_already_in_the_destination_is_never_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "logs"
    dest.mkdir()
    (dest / "oscar").symlink_to(outside)  # e.g. left by someone in a reused logs folder
    result = unpack(stream(("oscar/x.log", None, b"x")), dest, "oscar")
    assert result.refused == [f"'oscar/x.log': something else is in the way in {dest}"]
    assert not list(outside.iterdir())


def test_a_file_over_the_cap_stops_the_copy_without_reading_it(tmp_path):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        small = tarfile.TarInfo("oscar/small.log")
        small.size = 3
        tar.addfile(small, io.BytesIO(b"abc"))
        huge = tarfile.TarInfo("oscar/sparse.img")
        huge.size = 2 << 30  # the header says 2 GiB; the data never comes
        tar.fileobj.write(huge.tobuf(tarfile.GNU_FORMAT))  # type: ignore[union-attr]
        tar.offset += 512
    data.seek(0)
    result = unpack(data, tmp_path, "oscar")
    assert result.stopped and result.files == 1
    assert result.refused == ["'oscar/sparse.img': 2048 MiB, over the 1024 MiB a file may have; copy stopped"]
    assert everything_under(tmp_path) == {"oscar", "oscar/small.log"}


def test_the_copy_cap_and_the_time_limit_stop_a_copy(tmp_path):
    two = stream(("oscar/a", None, b"a" * 700_000), ("oscar/b", None, b"b" * 700_000))
    result = unpack(two, tmp_path / "one", "oscar", copy_cap=1 << 20)
    assert result.stopped and result.files == 1
    assert result.refused == ["'oscar/b': the copy would pass 1 MiB; copy stopped"]
    slow = unpack(stream(("oscar/a", None, b"a")), tmp_path / "two", "oscar", time_limit=-1)
    assert slow.stopped and slow.files == 0 and "took over" in slow.refused[0]


@pytest.mark.parametrize("data", [b"", b"not a tar stream at all\n" * 40, stream(("oscar/a", None, b"a" * 5000))
                                  .getvalue()[:1024]], ids=["empty", "garbage", "truncated"])
def test_a_stream_that_is_not_tar_is_one_error(tmp_path, data):
    with pytest.raises(DamagedStream):
        unpack(io.BytesIO(data), tmp_path, "oscar")


def test_no_bytes_at_all_is_an_empty_stream_not_garbage(tmp_path):
    with pytest.raises(EmptyStream):
        unpack(io.BytesIO(b""), tmp_path, "oscar")
    with pytest.raises(DamagedStream) as garbage:
        unpack(io.BytesIO(b"x" * 600), tmp_path, "oscar")
    assert not isinstance(garbage.value, EmptyStream)


def test_several_tops_each_a_path_and_which_ones_the_stream_held(tmp_path):
    data = stream(("var/log/oscar/a.log", None, b"a\n"), ("etc/oscar/shadow", tarfile.SYMTYPE, b"/etc/shadow"),
                  ("var/log/oscarx/b.log", None, b"b\n"), ("../escape", None, b"e"))
    result = unpack(data, tmp_path, ["var/log/oscar", "etc/oscar", "var/lib/none"])
    assert (tmp_path / "var" / "log" / "oscar" / "a.log").read_text() == "a\n"
    assert result.files == 1 and result.seen == {"var/log/oscar", "etc/oscar"}  # a refused entry counts as held
    assert not (tmp_path / "var" / "log" / "oscarx").exists()  # a name that only starts like a top
    assert len(result.refused) == 3, result.refused


def test_the_copy_cap_counts_the_data_of_refused_entries_too(tmp_path):
    data = stream(("other/a", None, b"a" * 700_000), ("other/b", None, b"b" * 700_000), ("oscar/c", None, b"c"))
    result = unpack(data, tmp_path, "oscar", copy_cap=1 << 20)
    assert result.stopped and result.files == 0  # the guest cannot make the host read on without end
    assert result.refused == ["'other/a': not under the copied path (absolute, '..' or another name)",
                              "'other/b': the copy would pass 1 MiB; copy stopped"]


def test_a_name_the_host_cannot_take_is_refused_and_the_copy_goes_on(tmp_path):
    longest, over, far_over = "n" * NAME_MAX, "o" * (NAME_MAX + 1), "a" * 300
    data = stream((f"oscar/{over}", None, b"x"), (f"oscar/{far_over}", tarfile.DIRTYPE, b""),
                  (f"oscar/{far_over}/in.log", None, b"x"), (f"oscar/{longest}", None, b"longest\n"),
                  ("oscar/after.log", None, b"after\n"))
    result = unpack(data, tmp_path, "oscar")
    assert (tmp_path / "oscar" / "after.log").read_text() == "after\n"
    assert (tmp_path / "oscar" / longest).read_text() == "longest\n"
    assert (result.files, result.stopped) == (2, False)
    assert [line.split(": ", 1)[1] for line in result.refused] == [
        f"a name of {NAME_MAX + 1} bytes, over the {NAME_MAX} a file system allows",
        "a name of 300 bytes, over the 255 a file system allows",
        "a name of 300 bytes, over the 255 a file system allows"]
    assert everything_under(tmp_path) == {"oscar", "oscar/after.log", f"oscar/{longest}"}


def test_a_path_too_deep_or_too_long_is_refused_and_the_copy_goes_on(tmp_path):
    deepest = "oscar/" + "d/" * (MAX_DEPTH - 2) + "f"  # MAX_DEPTH names
    prefix = "oscar/" + ("p" * 200 + "/") * 4
    longest = prefix + "f" * (MAX_PATH - len(prefix))  # MAX_PATH bytes
    data = stream((deepest, None, b"deepest\n"), (deepest + "/g", None, b"x"),
                  ("oscar/" + "e/" * 200 + "f", None, b"x"), (longest, None, b"longest\n"), (longest + "g", None, b"x"),
                  ("oscar/after.log", None, b"after\n"))
    result = unpack(data, tmp_path, "oscar")
    assert (tmp_path / deepest).read_text() == "deepest\n" and (tmp_path / longest).read_text() == "longest\n"
    assert (tmp_path / "oscar" / "after.log").read_text() == "after\n"
    assert (result.files, result.stopped) == (3, False)
    assert [line.split(": ", 1)[1] for line in result.refused] == [
        f"{MAX_DEPTH + 1} names deep, over the {MAX_DEPTH} a copy allows",
        f"202 names deep, over the {MAX_DEPTH} a copy allows",
        f"a path of {MAX_PATH + 1} bytes, over the {MAX_PATH} a copy allows"]
    assert not (tmp_path / "oscar" / "e" / "e" / "e" / "e").exists()  # nothing of a refused path is made


def test_entries_over_the_bound_stop_the_copy_refused_ones_counted_too(tmp_path):
    data = stream(("oscar/a", None, b"a"), ("oscar/link", tarfile.SYMTYPE, b"/etc/shadow"), ("oscar/b", None, b"b"),
                  ("oscar/c", None, b"c"))
    result = unpack(data, tmp_path / "small", "oscar", max_entries=2)
    assert (result.files, result.stopped) == (1, True)
    assert result.refused == ["'oscar/link': a link (to '/etc/shadow')",
                              "'oscar/b' and what follows: over 2 entries in one copy; copy stopped"]
    flood = io.BytesIO()
    with tarfile.open(fileobj=flood, mode="w") as tar:  # empty files: inodes on the worker, no bytes
        for number in range(MAX_ENTRIES + 50):
            tar.addfile(tarfile.TarInfo(f"oscar/{number}"))
    flood.seek(0)
    result = unpack(flood, tmp_path / "flood", "oscar")
    assert (result.files, result.stopped) == (MAX_ENTRIES, True)
    assert result.refused == [f"'oscar/{MAX_ENTRIES}' and what follows: over {MAX_ENTRIES} entries in one copy; "
                              "copy stopped"]
    assert len(list((tmp_path / "flood" / "oscar").iterdir())) == MAX_ENTRIES


def test_control_characters_in_a_refused_name_are_shown_escaped(tmp_path):
    data = stream(("oscar/\x1b[31mred", tarfile.SYMTYPE, b"/etc/\x1b[0mshadow"),
                  ("oscar/new\nline" + "x" * 300, None, b"x"), ("oscar/plain\x1b.log", None, b"kept\n"))
    result = unpack(data, tmp_path, "oscar")
    assert (tmp_path / "oscar" / "plain\x1b.log").read_text() == "kept\n"  # a name the host can take is kept
    assert result.refused[0] == r"'oscar/\x1b[31mred': a link (to '/etc/\x1b[0mshadow')"
    assert result.refused[1].startswith(r"'oscar/new\nline") and "over the 255" in result.refused[1]
    assert not [line for line in result.refused if not line.isprintable()]


def test_a_fifo_already_in_the_destination_is_in_the_way_not_opened(tmp_path):
    (tmp_path / "oscar").mkdir()
    os.mkfifo(tmp_path / "oscar" / "x.log")  # opening it to write would wait for a reader for ever
    result = unpack(stream(("oscar/x.log", None, b"x")), tmp_path, "oscar")
    assert result.refused == [f"'oscar/x.log': something else is in the way in {tmp_path}"]


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable, for root too (chattr +i: immutable), as a read-only disk is."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        folder.chmod(0o755)
        pytest.skip("root, and this file system has no immutable folders (chattr +i)")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_the_hosts_own_trouble_writing_is_infrastructure_not_bad_input(tmp_path):
    dest = tmp_path / "logs"
    with unwritable(dest), pytest.raises(HostCannotWrite) as raised:
        unpack(stream(("oscar/x.log", None, b"x")), dest, "oscar")
    assert isinstance(raised.value, InfraError) and not isinstance(raised.value, InputError)
    assert isinstance(raised.value.__cause__, OSError)
    assert str(raised.value).startswith(f"the host cannot write 'oscar/x.log' into {dest}: ")


class _Channel:
    """What paramiko's channel gives ``Connection``'s copy: the crafted stream, then exit status 0."""

    def __init__(self, data: bytes) -> None:
        self.data, self.status_event = data, threading.Event()
        self.status_event.set()

    def settimeout(self, timeout: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        pass

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        pass


class _Client:
    """A paramiko client whose every command answers with ``data`` (a headnode's tar, crafted)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_transport(self) -> _Client:
        return self

    def is_active(self) -> bool:
        return True

    def open_session(self, timeout: float) -> _Channel:
        return _Channel(self.data)

    def close(self) -> None:
        pass


def grab_crafted_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: io.BytesIO) -> ClusterDir:
    """A cluster whose headnode answers grab-logs with ``data``."""
    cluster = ClusterDir(tmp_path / "c")
    cluster.path.mkdir()
    cluster.save(ClusterState(cluster_id=7, spec={"template": "/x.qcow2", "ssh": {"password": "pw"}},
                              vms={"headnode": Vm("headnode", 0, ip="192.168.77.1", mac="52:54:00:12:34:01")}))
    client = cast(paramiko.SSHClient, _Client(data.getvalue()))
    monkeypatch.setattr(logs, "open_headnode", lambda session: Connection(client, "headnode"))
    return cluster


def test_grab_logs_lists_each_refused_entry_escaped_in_missing_txt_and_keeps_the_rest(tmp_path, monkeypatch):
    long, red, deep = ("var/log/oscar/" + "a" * 300, "var/log/oscar/\x1b[31mred",
                       "var/log/oscar/new\nline/" + "d/" * MAX_DEPTH + "f")
    data = stream((long, None, b"x"), (red, tarfile.SYMTYPE, b"/x"), (deep, None, b"x"),
                  ("var/log/oscar/oscarinstall.log", None, b"Step 1\n"), ("etc/oscar/oscar.conf", None, b"conf\n"))
    cluster = grab_crafted_logs(tmp_path, monkeypatch, data)
    verdict = logs.grab_logs(cluster, tmp_path / "logs")
    headnode = tmp_path / "logs" / "headnode"
    assert (headnode / "var/log/oscar/oscarinstall.log").read_text() == "Step 1\n"
    assert (headnode / "etc/oscar/oscar.conf").read_text() == "conf\n"
    text = (tmp_path / "logs" / "missing.txt").read_text()
    missing = text.splitlines()
    assert [line for line in missing if line.startswith("headnode: refused ")] == [
        f"headnode: refused {shown(long)}: a name of 300 bytes, over the 255 a file system allows",
        f"headnode: refused {shown(red)}: a link (to '/x')",
        f"headnode: refused {shown(deep)}: {MAX_DEPTH + 5} names deep, over the {MAX_DEPTH} a copy allows"]
    assert r"'var/log/oscar/\x1b[31mred'" in text and r"'var/log/oscar/new\nline/d/" in text
    assert all(line.isprintable() for line in missing)  # one line each, no terminal escapes
    assert "headnode:/var/log/systemimager (not there)" in missing
    assert f"missing: {len(missing)} (see missing.txt)" in verdict
    assert cluster.load().phases[-1].result == "passed"


def test_grab_logs_on_a_host_that_cannot_write_fails_as_infrastructure(tmp_path, monkeypatch):
    cluster = grab_crafted_logs(tmp_path, monkeypatch, stream(("var/log/oscar/oscarinstall.log", None, b"Step 1\n")))
    with unwritable(tmp_path / "logs" / "headnode"), pytest.raises(HostCannotWrite):
        logs.grab_logs(cluster, tmp_path / "logs")
    assert (cluster.load().phases[-1].result, cluster.load().phases[-1].blame) == ("failed", "infrastructure")
