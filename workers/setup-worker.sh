#!/bin/bash
# Make this hypervisor host an oscarvt Buildbot worker, or (--check) only say what is missing.
#
#   workers/setup-worker.sh --master HOST:PORT --name NAME --password-file FILE \
#       [--arches amd64,arm64] [--suites bullseye,bookworm,trixie] \
#       [--user oscarvt] [--dir /var/lib/oscarvt-worker] [--no-template] \
#       [--wheels FOLDER] [--memory-max SIZE]
#   workers/setup-worker.sh --check [--arches amd64,arm64]
#
# As root: installs the Debian packages it lacks (per arch: arm64 needs qemu-system-arm and
# qemu-efi-aarch64, and on an amd64 host qemu-user-static and binfmt-support to build its
# templates), creates the worker's user in group kvm and its folder DIR (mode 0700, everything
# in it private), installs oscarvt and buildbot-worker into DIR/venv (from PyPI, or with --wheels
# only from that folder of wheels), builds a headnode template per suite and arch (default:
# bookworm, amd64) as that user, creates the worker (DIR/worker; the password is copied to
# DIR/worker-password, 0600), installs and enables the hardened systemd unit
# oscarvt-worker.service (MemoryMax=SIZE with --memory-max) and starts it if systemd runs.
# Safe to run again. The last line is the verdict.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
UNIT=/etc/systemd/system/oscarvt-worker.service
PACKAGES="python3-venv python3-pip python3-setuptools python3-wheel qemu-system-x86 qemu-utils ipxe-qemu
busybox-static dropbear-bin xorriso isolinux syslinux-common cpio gzip iproute2 util-linux openssl mmdebstrap
e2fsprogs git subversion"
# What each architecture adds (oscarvt/arches.py, Arch.host_packages, says the same).
PACKAGES_arm64="qemu-system-arm qemu-efi-aarch64 qemu-user-static binfmt-support"
PACKAGES_amd64=""
arches=amd64 suites=bookworm
master="" name="" password_file="" user=oscarvt dir=/var/lib/oscarvt-worker template=1 check=0 wheels=""
memory_max=infinity

fail() { echo "FAIL: setup-worker: $*"; exit 1; }
say() { echo "--> $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --master) master=${2:-}; shift ;;
        --name) name=${2:-}; shift ;;
        --password-file) password_file=${2:-}; shift ;;
        --user) user=${2:-}; shift ;;
        --dir) dir=${2:-}; shift ;;
        --wheels) wheels=${2:-}; shift ;;
        --memory-max) memory_max=${2:-}; shift ;;
        --arches) arches=${2:-}; shift ;;
        --suites) suites=${2:-}; shift ;;
        --no-template) template=0 ;;
        --check) check=1 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[[ "$arches" =~ ^(amd64|arm64)(,(amd64|arm64))*$ ]] || fail "--arches must be amd64, arm64 or both (a,b), not '${arches}'"
[[ "$suites" =~ ^[a-z][a-z0-9.-]*(,[a-z][a-z0-9.-]*)*$ ]] \
    || fail "--suites must be Debian suite names like bookworm (a,b), not '${suites}'"
for arch in ${arches//,/ }; do
    extra="PACKAGES_$arch"
    PACKAGES+=" ${!extra}"
done

# The Debian packages of $PACKAGES that are not installed, one a line.
missing_packages() {
    local package
    for package in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || echo "$package"
    done
}

# What this host lacks for running virtual clusters, one line each.
missing() {
    missing_packages | sed 's/.*/package & is not installed/'
    if [ ! -e /dev/kvm ]; then
        echo "no /dev/kvm: virtual clusters will run under TCG (slow but they work)"
    elif id "$user" >/dev/null 2>&1 && ! id -nG "$user" | grep -qw kvm; then
        echo "user $user is not in group kvm (KVM cannot be used)"
    fi
    if [[ ",$arches," == *,arm64,* && "$(uname -m)" != aarch64 ]] \
        && ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
        echo "binfmt_misc runs no arm64 programs: arm64 templates cannot be built (update-binfmts --enable qemu-aarch64)"
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
[ -f "$password_file" ] && [ -r "$password_file" ] || fail "--password-file: cannot read '${password_file}'"
[[ "$user" =~ ^[a-z_][a-z0-9_-]*$ ]] || fail "--user must be a user name, not '${user}'"
# The unit hides /home, /root and /run/user and gives the worker its own /tmp: DIR is elsewhere.
[[ "$dir" =~ ^(/[A-Za-z0-9._-]+)+$ && ! "$dir" =~ (^|/)\.\.?(/|$) \
    && ! "$dir" =~ ^/(home|root|tmp|var/tmp|run|proc|sys|dev)(/|$) ]] \
    || fail "--dir must be an absolute path (letters, digits, '._-') outside /home, /root, /tmp, /run, not '${dir}'"
[[ "$memory_max" =~ ^([1-9][0-9]*[KMGT]?|[1-9][0-9]?%|100%|infinity)$ ]] \
    || fail "--memory-max must be a size like 16G, a percentage of the host's memory or infinity, not '${memory_max}'"
if [ -n "$wheels" ]; then
    compgen -G "$wheels/*.whl" >/dev/null || fail "--wheels: no *.whl in '${wheels}'"
fi
worker_pin=$(grep -o 'buildbot-worker==[0-9][0-9.]*' "$REPO/setup.py" | head -n 1)
[ -n "$worker_pin" ] || fail "$REPO/setup.py pins no buildbot-worker version"

# Everything this script writes is private to its owner; the unit is the one public file.
umask 077
build=$(mktemp -d /tmp/oscarvt-setup-worker.XXXXXX) || fail "mktemp failed"
trap 'rm -rf "$build"' EXIT

# A command as the worker's user (HOME is DIR), with the private umask.
as_user() { runuser -u "$user" -- /bin/sh -c 'umask 077 && exec "$@"' as_user "$@"; }

packages=$(missing_packages | tr '\n' ' ')
if [ -n "${packages// /}" ]; then
    say "Debian packages: $packages"
    # shellcheck disable=SC2086
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >/dev/null; } \
        || fail "apt-get install $packages failed"
else
    say "Debian packages: all installed"
fi
getent group kvm >/dev/null || groupadd --system kvm || fail "groupadd kvm failed"
if ! id "$user" >/dev/null 2>&1; then
    say "user $user (group kvm), home $dir"
    useradd --system --create-home --home-dir "$dir" --groups kvm --shell /bin/bash "$user" || fail "useradd failed"
else
    usermod -a -G kvm "$user" || fail "usermod -a -G kvm $user failed"
fi
say "$dir: mode 0700, its files private to $user"
mkdir -p "$dir" && chown "$user:" "$dir" && chmod 0700 "$dir" || fail "cannot make $dir"
install -m 0600 -o "$user" -g "$(id -gn "$user")" "$password_file" "$dir/worker-password" \
    || fail "cannot copy $password_file to $dir/worker-password"

say "oscarvt and $worker_pin in $dir/venv${wheels:+ (wheels from $wheels only)}"
# The user builds oscarvt's wheel from a copy of the checkout (Debian's setuptools and wheel,
# nothing downloaded), and pip installs it with its dependencies: from PyPI, or with --wheels
# from that folder alone (copied too, so the user need not read the admin's folders).
mkdir "$build/src" "$build/dist" "$build/wheels" \
    && cp -r "$REPO/setup.py" "$REPO/README.md" "$REPO/constraints.txt" "$REPO/oscarvt" "$REPO/oscarvt_steps" \
        "$REPO/oscarvt_master" "$build/src/" || fail "cannot copy $REPO"
pip_from=()
if [ -n "$wheels" ]; then
    cp "$wheels"/*.whl "$build/wheels/" || fail "cannot copy the wheels in $wheels"
    pip_from=(--no-index --find-links "$build/wheels")
fi
chown -R "$user:" "$build" || fail "chown $build failed"
as_user /usr/bin/python3 -m pip wheel -q --no-deps --no-build-isolation --no-index --no-cache-dir \
    -w "$build/dist" "$build/src" >/dev/null || fail "building oscarvt's wheel from $REPO failed"
[ -x "$dir/venv/bin/pip" ] || as_user /usr/bin/python3 -m venv "$dir/venv" || fail "python3 -m venv failed"
wheel=$(echo "$build"/dist/oscarvt-*.whl)
# Every dependency at the version constraints.txt pins, the versions the suite passed with. The
# second pip replaces an oscarvt of the same version number with this checkout's.
{ as_user "$dir/venv/bin/pip" install -q --disable-pip-version-check "${pip_from[@]}" -c "$build/src/constraints.txt" \
    "$wheel" "$worker_pin" \
    && as_user "$dir/venv/bin/pip" install -q --disable-pip-version-check --no-index --no-deps --force-reinstall \
        "$wheel"; } || fail "pip install of oscarvt and $worker_pin failed"

if [ "$template" = 1 ]; then
    for suite in ${suites//,/ }; do
        for arch in ${arches//,/ }; do
            say "headnode template $suite $arch (amd64: a minute; arm64 on amd64: several, emulated)"
            as_user "$dir/venv/bin/oscarvt" image build --suite "$suite" --arch "$arch" >/dev/null \
                || fail "oscarvt image build --suite $suite --arch $arch failed"
        done
    done
    say "the master's matrix finds them by suite and arch: give this worker 'arches: [${arches//,/, }]'"
fi
if [ ! -f "$dir/worker/buildbot.tac" ]; then
    say "worker $name for $master"
    as_user "$dir/venv/bin/buildbot-worker" create-worker --umask=0o077 "$dir/worker" "$master" "$name" \
        "(read from $dir/worker-password)" >/dev/null || fail "buildbot-worker create-worker failed"
fi
# The worker reads its password from DIR/worker-password when it starts (it is not on a command
# line, and running this again with another file changes it) and keeps the private umask (also
# in a worker that an earlier version of this script created).
as_user sed -i -e "s|^passwd = .*|passwd = open('$dir/worker-password').read().rstrip('\\\\r\\\\n')|" \
    -e 's|^umask = .*|umask = 0o077|' "$dir/worker/buildbot.tac" || fail "cannot edit $dir/worker/buildbot.tac"
# pip makes its scripts 0755 whatever the umask, and an earlier version of this script left files
# readable: everything in DIR is the user's alone.
as_user chmod -R go-rwx "$dir" || fail "chmod -R go-rwx $dir failed"

sed -e "s|@USER@|$user|g" -e "s|@DIR@|$dir|g" -e "s|@MEMORY_MAX@|$memory_max|g" "$HERE/oscarvt-worker.service" \
    > "$build/unit" && install -m 0644 "$build/unit" "$UNIT" || fail "cannot write $UNIT"
if [ -d /run/systemd/system ]; then
    out=$({ systemctl daemon-reload && systemctl enable --now oscarvt-worker.service; } 2>&1) \
        || { echo "$out" | sed 's/^/--> /'; fail "systemctl could not start oscarvt-worker.service"; }
    started="started (systemctl status oscarvt-worker)"
else
    # Offline, systemctl only makes the multi-user.target.wants link: it starts at the next boot.
    out=$(systemctl enable oscarvt-worker.service 2>&1) \
        || { echo "$out" | sed 's/^/--> /'; fail "systemctl enable oscarvt-worker.service failed"; }
    started="installed and enabled; systemd is not running here: it starts at boot, or now with:"
    started+=" runuser -u $user -- $dir/venv/bin/buildbot-worker start $dir/worker"
fi
problems=$(missing)
[ -z "$problems" ] || echo "$problems" | sed 's/^/--> note: /'
echo "PASS: setup-worker: worker $name for $master $started"
