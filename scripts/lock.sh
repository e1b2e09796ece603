#!/bin/sh
# Refresh constraints.txt, the versions of every Python package oscarvt installs (direct and
# transitive): resolve oscarvt[test] anew, from PyPI, in a throwaway venv of Debian's Python (what a
# worker host runs), and pin exactly what that installed. `make lock` runs it; then `make test`, and
# commit constraints.txt with the code that passed against it.
#
# Why a constraints file without hashes: pip takes hashes from requirement lines only; a hash in a
# constraints file turns on hash checking for the requirements, which then fail for want of their
# own hashes (pip 23.0.1, measured), and a worker's --wheels may be built locally.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$PWD[test]"
{
    echo "# Every Python package oscarvt installs, direct and transitive, at the versions its tests passed with"
    echo "# (make, CI and workers/setup-worker.sh install with -c constraints.txt). Refresh: make lock."
    "$tmp/venv/bin/pip" freeze --disable-pip-version-check --exclude oscarvt
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages pinned"
