"""What a guest sends, unpacked on the host (``oscarvt.unpack``): hostile tar streams, made here
as a guest's tar would send them, write nothing outside the copy and refuse each bad entry by name."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from oscarvt.unpack import DamagedStream, EmptyStream, unpack


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
