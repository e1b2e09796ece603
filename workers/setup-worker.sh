#!/bin/bash
# Make this hypervisor host an oscarvt Buildbot worker, or (--check) only say what is missing.
#
#   workers/setup-worker.sh --master HOST:PORT --name NAME --password-file FILE \
#       [--user oscarvt] [--dir /var/lib/oscarvt-worker] [--no-template]
#   workers/setup-worker.sh --check
#
# As root: installs QEMU and the tools the driver runs (Debian packages), creates the worker's
# user in group kvm, installs oscarvt and buildbot-worker into DIR/venv, builds the headnode
# template as that user, creates the worker (DIR/worker) and installs and starts the systemd
# unit oscarvt-worker.service. Safe to run again. The last line is the verdict.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PACKAGES="python3-venv qemu-system-x86 qemu-utils ipxe-qemu busybox-static dropbear-bin xorriso isolinux
syslinux-common cpio gzip iproute2 util-linux openssl mmdebstrap e2fsprogs git subversion"
master="" name="" password_file="" user=oscarvt dir=/var/lib/oscarvt-worker template=1 check=0

fail() { echo "FAIL: setup-worker: $*"; exit 1; }
say() { echo "--> $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --master) master=${2:-}; shift ;;
        --name) name=${2:-}; shift ;;
        --password-file) password_file=${2:-}; shift ;;
        --user) user=${2:-}; shift ;;
        --dir) dir=${2:-}; shift ;;
        --no-template) template=0 ;;
        --check) check=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown option '$1' (see --help)" ;;
    esac
    shift
done

# What this host lacks for running virtual clusters, one line each.
missing() {
    local package
    for package in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || echo "package $package is not installed"
    done
    if [ ! -e /dev/kvm ]; then
        echo "no /dev/kvm: virtual clusters will run under TCG (slow but they work)"
    elif id "$user" >/dev/null 2>&1 && ! id -nG "$user" | grep -qw kvm; then
        echo "user $user is not in group kvm (KVM cannot be used)"
    fi
}

if [ "$check" = 1 ]; then
    problems=$(missing)
    [ -z "$problems" ] && { echo "PASS: setup-worker --check: this host has what oscarvt needs"; exit 0; }
    echo "$problems" | sed 's/^/--> /'
    echo "FAIL: setup-worker --check: $(echo "$problems" | wc -l) things to fix (run without --check as root)"
    exit 1
fi

[ "$(id -u)" = 0 ] || fail "run as root (or use --check)"
[[ "$master" =~ ^[^:[:space:]]+:[0-9]+$ ]] || fail "--master must be HOST:PORT, not '${master}'"
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || fail "--name must be a worker name, not '${name}'"
[ -r "$password_file" ] || fail "--password-file: cannot read '${password_file}'"
[[ "$user" =~ ^[a-z_][a-z0-9_-]*$ ]] || fail "--user must be a user name, not '${user}'"

say "Debian packages"
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES >/dev/null || fail "apt-get install failed"
getent group kvm >/dev/null || groupadd --system kvm
if ! id "$user" >/dev/null 2>&1; then
    say "user $user (group kvm), home $dir"
    useradd --system --create-home --home-dir "$dir" --groups kvm --shell /bin/bash "$user" || fail "useradd failed"
else
    usermod -a -G kvm "$user"
fi
mkdir -p "$dir" && chown "$user:" "$dir"
runuser -u "$user" -- test -r "$REPO/setup.py" \
    || fail "user $user cannot read $REPO (put the oscarvt checkout where $user can read it, e.g. /opt)"
say "oscarvt and buildbot-worker in $dir/venv"
runuser -u "$user" -- python3 -m venv "$dir/venv" || fail "python3 -m venv failed"
runuser -u "$user" -- "$dir/venv/bin/pip" install -q "$REPO[buildbot]" || fail "pip install of $REPO failed"
if [ "$template" = 1 ]; then
    say "headnode template (about a minute the first time)"
    runuser -u "$user" -- "$dir/venv/bin/oscarvt" image build | tail -n 7 || fail "oscarvt image build failed"
    say "put the template's spec lines above into the builders' spec in the master's settings"
fi
if [ ! -f "$dir/worker/buildbot.tac" ]; then
    say "worker $name for $master"
    runuser -u "$user" -- "$dir/venv/bin/buildbot-worker" create-worker --umask=0o22 "$dir/worker" "$master" "$name" \
        "$(cat "$password_file")" >/dev/null || fail "buildbot-worker create-worker failed"
fi
sed -e "s|@USER@|$user|g" -e "s|@DIR@|$dir|g" "$HERE/oscarvt-worker.service" > /etc/systemd/system/oscarvt-worker.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload && systemctl enable --now oscarvt-worker.service >/dev/null \
        || fail "systemctl could not start oscarvt-worker.service"
    started="started (systemctl status oscarvt-worker)"
else
    started="installed; systemd is not running here, start it with: runuser -u $user -- $dir/venv/bin/buildbot-worker start $dir/worker"
fi
problems=$(missing)
[ -z "$problems" ] || echo "$problems" | sed 's/^/--> note: /'
echo "PASS: setup-worker: worker $name for $master $started"
