#!/bin/sh
# warm-template.sh OSCARVT SUITE ARCH: boot one headnode of this host's SUITE/ARCH template in the
# default shape (no nodes, TCG), so that its state is saved beside the template (oscarvt.warm) and
# the next headnodes of that shape start warm; then destroy it. A template that is warm already
# starts warm here too (seconds). Run it in a private network namespace (make template does).
# A failed warm-up is reported in one line and not fatal: those headnodes then boot cold.
oscarvt=$1 suite=$2 arch=$3
ip link set lo up || exit 1
dir=$(mktemp -d) || exit 1
trap '"$oscarvt" destroy --cluster "$dir/cluster" >/dev/null 2>&1; rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM
printf 'template: {suite: %s, arch: %s}\nnodes: {count: 0}\naccel: tcg\n' "$suite" "$arch" > "$dir/spec.yaml"
for verb in copy-vm-image boot-headnode; do
    if [ $verb = copy-vm-image ]; then
        said=$("$oscarvt" copy-vm-image --cluster "$dir/cluster" --spec "$dir/spec.yaml" 2>&1 | tail -n 1)
    else
        said=$("$oscarvt" boot-headnode --cluster "$dir/cluster" 2>&1 | tail -n 1)
    fi
    case $said in
        "PASS: "*) ;;
        *) echo "warm-up: $suite $arch did not boot, its first headnodes boot cold: $said"; exit 0 ;;
    esac
done
echo "warm-up: $suite $arch: ${said#PASS: boot-headnode: }"
