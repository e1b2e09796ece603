"""External programs stopped early leave nothing behind: no process of theirs, no mount in the cache."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from oscarvt import tools
from oscarvt.errors import InfraError
from oscarvt.image import unmount_below


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_program_past_its_timeout_may_clean_up_and_leaves_no_process(tmp_path, monkeypatch):
    """Like mmdebstrap: it cleans up on SIGTERM, and has children of its own (apt, dpkg)."""
    monkeypatch.setattr(tools, "STOP_WAIT", 3.0)
    script = (f"trap 'echo cleaned up > {tmp_path}/cleaned; exit 1' TERM; "
              f"sh -c 'trap \"\" TERM; echo $$ > {tmp_path}/child; exec sleep 300' & wait")
    with pytest.raises(InfraError, match=r"^a tool failed: still running after 2s \(a hint\)$"):
        tools.run_tool(["sh", "-c", script], "a tool", hint="a hint", timeout=2)
    assert (tmp_path / "cleaned").read_text() == "cleaned up\n"
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:  # SIGKILLed with its group; init reaps it
        time.sleep(0.05)
    assert not alive(child)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_mounts_left_in_a_built_root_are_unmounted(tmp_path):
    root = tmp_path / "root with space"
    for point in ("proc", "dev/pts"):
        (root / point).mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "proc")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "dev/pts")], check=True)
    unmount_below(root)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path).replace(" ", "\\040") not in mounts
    assert (root / "proc").is_dir()
