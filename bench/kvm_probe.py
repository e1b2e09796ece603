"""What the KVM probe costs a build, as JSON: the first decision of a host boot, then a later build's.

In one run, with an empty cache of its own (a temporary ``OSCARVT_CACHE``): the first
decision, a real probe of the test guest's kernel with the spec's default
``timeouts.kvm_probe`` (on a host whose /dev/kvm opens but cannot run a guest it takes
the whole timeout; without /dev/kvm it is decided at once); then the kept record is made
more than an hour old and a second build decides again, as after a reboot-less hour. The
second decision must come from the record, in milliseconds.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from oscarvt import log
from oscarvt.accel import choose_accel, probe_record
from oscarvt.spec import Timeouts
from oscarvt_dev.testguest import build_test_guest

AGED_S = 3600 + 60  # the record's age at the second decision


def main() -> None:
    log.use_stream(sys.stderr)
    kernel = build_test_guest().kernel
    timeout = Timeouts().kvm_probe
    with tempfile.TemporaryDirectory(prefix="oscarvt-bench.") as cache:
        os.environ["OSCARVT_CACHE"] = cache
        started = time.monotonic()
        first = choose_accel("auto", kernel, timeout)
        first_s = time.monotonic() - started
        record = probe_record()
        kept = record is not None and record.exists()
        if record is not None and kept:
            aged = json.loads(record.read_text())
            aged["at"] -= AGED_S
            record.write_text(json.dumps(aged))
        started = time.monotonic()
        second = choose_accel("auto", kernel, timeout)
        second_s = time.monotonic() - started
    print(json.dumps({
        "accel": first.name, "first_reason": first.reason,
        "probe_timeout_s": timeout,
        "first_decision_of_the_boot_s": round(first_s, 3), "first_decided_by": first.decided_by,
        "record_kept": kept, "record_age_at_second_s": AGED_S if kept else None,
        "second_decision_ms": round(second_s * 1000, 2), "second_decided_by": second.decided_by,
        "second_reason": second.reason,
        "ratio_first_to_second": round(first_s / second_s, 1) if second_s > 0 else None,
    }, indent=2))
    if kept and second.decided_by == first.decided_by:
        sys.exit("the second decision did not come from the kept record")


if __name__ == "__main__":
    main()
