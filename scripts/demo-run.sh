#!/bin/sh
# The driver's whole pipeline on its own (until the Buildbot package lands): `oscarvt run`
# with examples/oscar-mini as the OSCAR under test, on a headnode from the Debian template
# and two blank nodes that boot its autoinstall CD. Runs in a private network namespace;
# needs the template (make template). The logs stay in the folder printed first.
set -eu
VENV=${VENV:-.venv}
DIR=$(mktemp -d /tmp/oscarvt-demo.XXXXXX)
echo "== demo folder: $DIR"
"$VENV/bin/python" - "$DIR" <<'PY'
import sys
from pathlib import Path
import yaml
from oscarvt.image import build_template
template, _ = build_template()
root = Path(sys.argv[1])
(root / "spec.yaml").write_text(yaml.safe_dump(
    {**template.spec_data(), "nodes": {"count": 2, "memory": 384, "disk": "1G", "boot": "cdrom"}}))
PY
echo "== spec: $DIR/spec.yaml"; cat "$DIR/spec.yaml"
exec "$VENV/bin/oscarvt" run --cluster "$DIR/cluster" --spec "$DIR/spec.yaml" --source examples/oscar-mini \
    --logs "$DIR/logs"
