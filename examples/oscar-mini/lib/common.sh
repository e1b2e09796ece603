# Shared by install_cluster and its steps: logging, errors, OSCAR's paths, menu replay.

OSCAR_LOG_DIR=/var/log/oscar
OSCAR_LOG=$OSCAR_LOG_DIR/oscarinstall.log
OSCAR_CONF_DIR=/etc/oscar
SI_IMAGES=/var/lib/systemimager/images
SI_SCRIPTS=/var/lib/systemimager/scripts
SI_LOG_DIR=/var/log/systemimager
SI_MONITOR_PORT=8181

log_section() { echo "=============================================="; echo "$(date '+%F %T') $*"; }
log_subsection() { echo "--> $*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

# read_menu FILE "ITEMS WITH A VALUE" "ITEMS THAT END IT": replay an answer file as OSCAR's
# Perl menus read one (scripts/cli/build_oscar_image_cli, define_oscar_clients_cli, file mode).
# Prints "ITEM<TAB>VALUE" per answer (VALUE empty for items without one). A line starting
# with '#', an empty line and "0" are passed over; any other line is read as a number, as
# Perl does (" 4" and "4x" are 4); a number that is no item is ignored, as OSCAR ignores it,
# with a warning here. The value is the very next line, whatever it holds. An item that ends
# the menu (build, add, quit) ends the reading: OSCAR reads no further.
# Stricter than OSCAR, so that mistakes show: a value missing at the end of the file, or one
# with a carriage return (DOS line ends), is an error naming the file and line.
read_menu() {
    local file=$1 valued=" $2 " ending=" $3 " number=0 item="" line
    [ -r "$file" ] || die "$file: cannot read the answer file"
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        if [ -n "$item" ]; then
            [[ "$line" != *$'\r'* ]] || die "$file line $number: the value has a carriage return (DOS line ends); OSCAR would keep it in the value"
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
    [ -z "$item" ] || die "$file: menu item $item needs a value on the next line (OSCAR would read none and go on)"
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
