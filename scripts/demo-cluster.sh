#!/bin/sh
# The driver on its own: a virtual cluster of test guests (1 headnode + 2 nodes)
# is created, booted, reached over SSH and destroyed with the oscarvt verbs.
# Runs in a private network namespace; needs the test guest (make testguest).
set -eu
VENV=${VENV:-.venv}
DIR=$(mktemp -d /tmp/oscarvt-demo.XXXXXX)
GUEST=$("$VENV/bin/python" -m oscarvt.testguest)
O="$VENV/bin/oscarvt"
trap '"$O" destroy --cluster "$DIR/cluster" >/dev/null 2>&1 || true' EXIT

"$VENV/bin/python" - "$GUEST" "$DIR" <<'PY'
import sys
from pathlib import Path
from oscarvt.testguest import TestGuest
guest, root = TestGuest(Path(sys.argv[1])), Path(sys.argv[2])
guest.build_iso(root / "node.iso", "oscarvt.lan=192.168.77")
(root / "spec.yaml").write_text(f"""\
template: {{kernel: {guest.kernel}, initrd: {guest.initrd}, append: console=ttyS0 quiet}}
headnode: {{memory: 256}}
nodes: {{count: 2, memory: 256, disk: 64M}}
network: {{subnet: 192.168.77.0/24}}
ssh: {{password: {guest.password}}}
""")
PY
echo "== spec: $DIR/spec.yaml"; cat "$DIR/spec.yaml"
set -x
"$O" copy-vm-image --cluster "$DIR/cluster" --spec "$DIR/spec.yaml"
"$O" boot-headnode --cluster "$DIR/cluster"
"$O" boot-compute-nodes --cluster "$DIR/cluster" --iso "$DIR/node.iso"
"$O" ssh --cluster "$DIR/cluster" headnode -- 'for i in $(seq 60); do ping -c1 -W1 192.168.77.3 >/dev/null && break; done; ping -c 2 192.168.77.2 && ping -c 2 192.168.77.3'
"$O" ssh --cluster "$DIR/cluster" oscarnode2 -- uname -a
"$O" status --cluster "$DIR/cluster"
"$O" destroy --cluster "$DIR/cluster"
