# Shared by install_cluster and its steps: logging, errors, OSCAR's paths, menu replay.

OSCAR_LOG_DIR=/var/log/oscar
OSCAR_LOG=$OSCAR_LOG_DIR/oscarinstall.log
OSCAR_CONF_DIR=/etc/oscar
SI_IMAGES=/var/lib/systemimager/images
SI_SCRIPTS=/var/lib/systemimager/scripts
SI_LOG_DIR=/var/log/systemimager
SI_MONITOR_PORT=8181

# OSCAR's logging (lib/OSCAR/Logger.pm): sections and subsections are printed from verbosity 3
# on (OSCAR_VERBOSE; 1 when unset), other messages from the level given, as "[TYPE - SCRIPT] MESSAGE".
verbosity() { case "${OSCAR_VERBOSE:-1}" in ''|*[!0-9]*) echo 1 ;; *) echo "${OSCAR_VERBOSE:-1}" ;; esac; }
log_section() {  # TITLE [LEVEL]: a blank line, a line of '=', "== TITLE", a line of '='
    [ "$(verbosity)" -ge "${2:-3}" ] || return 0
    local rule
    rule=$(printf '=%.0s' {1..80})
    printf '\n%s\n== %s\n%s\n' "$rule" "$1" "$rule"
}
log_subsection() {  # TITLE: the title centred in 80 columns of '-'
    [ "$(verbosity)" -ge 3 ] || return 0
    local before=$(( (80 - ${#1}) / 2 - 1 )) after
    after=$(( 80 - before - ${#1} - 2 ))
    printf '%s %s %s\n' "$(dashes "$before")" "$1" "$(dashes "$after")"
}
dashes() { [ "$1" -gt 0 ] && printf -- '-%.0s' $(seq "$1"); }
oscar_log() {  # TYPE MESSAGE [LEVEL] [SCRIPT]: "[ERROR - main_cli] ...", as oscar_log(LEVEL, TYPE, ...)
    [ "$(verbosity)" -ge "${3:-1}" ] || return 0
    echo "[$1 - ${4:-${OSCAR_SCRIPT:-$(basename "$0")}}] $2"
}
die() { echo "ERROR: $*" >&2; exit 1; }
# perl_die MESSAGE [STATUS]: end as a Perl script's die does, "MESSAGE at SCRIPT line N." (the
# caller's line); the status is Perl's for a die after a failed command, 2 unless given.
perl_die() { echo "$1 at $0 line ${BASH_LINENO[0]}." >&2; exit "${2:-2}"; }

# has_bug NAME: true if share/oscar-mini.conf's BUGS names NAME, one of OSCAR's own bugs that
# oscar-mini reproduces on demand (see README.md, "OSCAR's bugs on demand").
has_bug() {
    local NETBOOT="" BUGS=""
    . "$OSCAR_HOME/share/oscar-mini.conf" 2>/dev/null || return 1
    [[ " $BUGS " == *" $1 "* ]]
}

# read_menu FILE "ITEMS WITH A VALUE" "ITEMS THAT END IT": replay an answer file as OSCAR's
# Perl menus read one (scripts/cli/build_oscar_image_cli, define_oscar_clients_cli, file mode).
# Prints "ITEM<TAB>VALUE" per answer (VALUE empty for items without one). A line starting
# with '#', an empty line and "0" are passed over; any other line is read as a number, as
# Perl does (" 4" and "4x" are 4); a number that is no item is ignored, as OSCAR ignores it,
# with a warning here. The value is the very next line, whatever it holds (a carriage return
# included). An item that ends the menu (build, add, quit) ends the reading: OSCAR reads no
# further. An item that takes a value on the file's last line is printed as "ITEM" alone: OSCAR
# then asks for the value on stdin (ask_value).
read_menu() {
    local file=$1 valued=" $2 " ending=" $3 " number=0 item="" line
    [ -r "$file" ] || perl_die "Can't open $file"
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        if [ -n "$item" ]; then
            printf '%s\t%s\n' "$item" "$line"
            [[ "$ending" != *" $item "* ]] || return 0
            item=""
            continue
        fi
        case "$line" in '#'*|''|0) continue ;; esac
        if [[ "$line" =~ ^[[:space:]]*\+?0*([0-9]+)([^0-9.eE]|$) ]]; then
            item=${BASH_REMATCH[1]}
        else
            item=0
        fi
        if [[ "$valued" == *" $item "* ]]; then
            continue  # its value is the next line
        elif [[ "$ending" == *" $item "* ]]; then
            printf '%s\t\n' "$item"
            return 0
        else
            echo "oscar-mini: WARNING: $file line $number: '$line' is not a menu item; OSCAR ignores it" >&2
        fi
        item=""
    done < "$file"
    [ -z "$item" ] || echo "$item"
}

# ask_value TITLE CURRENT: OSCAR's interactive question for one value (e.g. build_oscar_image_cli
# 341-352), answered on stdin (fd 4, the step's own stdin): sets $answer to the value typed, or to
# CURRENT if none was, or stdin has ended.
ask_value() {
    local typed=""
    printf '%s\n-----------------------\nCurrently: %s\nNew:  ' "$1" "$2"
    IFS= read -r typed <&4 || typed=""
    answer=${typed:-$2}
}

# server_arch: this server's Debian architecture (dpkg --print-architecture). The client image,
# its installer and the boot media are of the server's architecture, as OSCAR's client images are
# of the server's distribution. amd64 nodes boot by BIOS (syslinux), arm64 nodes by UEFI (GRUB).
server_arch() {
    local arch
    arch=$(dpkg --print-architecture) || die "cannot tell this server's architecture (dpkg --print-architecture)"
    case "$arch" in
        amd64|arm64) echo "$arch" ;;
        *) die "oscar-mini makes nodes of amd64 or arm64 servers, not $arch" ;;
    esac
}

# netboot: oscar-mini's NETBOOT setting (share/oscar-mini.conf): http or tftp.
netboot() {
    local NETBOOT=""
    . "$OSCAR_HOME/share/oscar-mini.conf" || die "cannot read $OSCAR_HOME/share/oscar-mini.conf"
    case "$NETBOOT" in
        http|tftp) echo "$NETBOOT" ;;
        *) die "$OSCAR_HOME/share/oscar-mini.conf: NETBOOT must be http or tftp, not '$NETBOOT'" ;;
    esac
}

# arch_console ARCH: the serial console of a node of ARCH (the PC's UART, or the virt machine's PL011).
arch_console() { case "$1" in arm64) echo ttyAMA0 ;; *) echo ttyS0 ;; esac; }

# valid_ipv4 ADDRESS: true if ADDRESS is a dotted IPv4 address.
valid_ipv4() {
    local IFS=. part count=0
    [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
    for part in $1; do [ "$part" -le 255 ] || return 1; count=$((count + 1)); done
    [ "$count" = 4 ]
}

# iface_ipv4 IFACE: the interface's IPv4 address with prefix (e.g. 192.168.77.1/24).
iface_ipv4() { ip -o -4 addr show dev "$1" | awk '{print $4; exit}'; }

# node_modules: the kernel modules (files, dependencies first) of a node's virtual hardware and
# root file system: virtio PCI, network and disk, ext4. The installer loads them; images carry them.
node_modules() {
    modprobe --show-depends -a virtio_pci virtio_net virtio_blk ext4 | awk '$1 == "insmod" { print $2 }'
}

# file_is_elf FILE: true if FILE is an ELF binary or library.
file_is_elf() { [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

# copy_libraries BINARY ROOT: copy the shared libraries BINARY needs under ROOT (same paths).
copy_libraries() {
    local lib
    for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
        [ -e "$2$lib" ] || cp -L --parents "$lib" "$2"
    done
}

# node_ssh NODE COMMAND...: run COMMAND on a compute node as root, with the server's root key.
# Nodes make new host keys whenever they are imaged, so host keys are not remembered.
# It reads stdin: give it </dev/null in loops that read a file.
node_ssh() {
    local node=$1
    shift
    ssh -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$node" "$@"
}

# server_public_key: root's public SSH key on this server (made on first use).
server_public_key() {
    [ -f /root/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519 >/dev/null
    cat /root/.ssh/id_ed25519.pub
}
