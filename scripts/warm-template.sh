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
# passes VERB [FLAGS]: run `oscarvt VERB --cluster DIR FLAGS`; its verdict line in $said; true if PASS.
passes() {
    verb=$1; shift
    said=$("$oscarvt" "$verb" --cluster "$dir/cluster" "$@" 2>&1 | tail -n 1)
    case $said in "PASS: "*) ;; *) return 1 ;; esac
}
printf 'template: {suite: %s, arch: %s}\nnodes: {count: 0}\naccel: tcg\n' "$suite" "$arch" > "$dir/spec.yaml"
if passes copy-vm-image --spec "$dir/spec.yaml" && passes boot-headnode; then
    echo "warm-up: $suite $arch: ${said#PASS: boot-headnode: }"
else
    echo "warm-up: $suite $arch did not boot, its first headnodes boot cold: $said"
fi
