# oscarvt: `make demo` runs the main job, `make test` runs the whole suite.
# Both install what they need (Debian packages, a .venv), idempotently, as root on Debian 12.

# Debian's own Python, as on a fresh worker host (this machine has a newer python3 on PATH).
PYTHON ?= /usr/bin/python3
VENV := .venv
# What the demo and a worker host need (workers/setup-worker.sh installs the same); libcairo2:
# buildbot-badges draws the badges with it.
APT_PACKAGES := python3-venv python3-pip python3-setuptools python3-wheel qemu-system-x86 qemu-utils ipxe-qemu busybox-static dropbear-bin \
	xorriso isolinux syslinux-common cpio gzip iproute2 util-linux openssl \
	mmdebstrap e2fsprogs passwd systemd git subversion libcairo2
# What arm64 clusters add on an amd64 host (oscarvt/arches.py): emulated templates and guests.
APT_ARM64_PACKAGES := qemu-system-arm qemu-efi-aarch64 qemu-user-static binfmt-support
# What only the suite needs: libvirt's schema (profiles rendered for libvirt are checked against it),
# Chromium (the web pages), PostgreSQL (tests/test_postgresql.py runs its own server in a temporary
# folder; its "main" cluster is not used).
APT_TEST_PACKAGES := libvirt0 chromium postgresql curl
PYTEST_ARGS ?=
# make test runs the suite in two processes (pytest-xdist; a module stays in one process).
PYTEST_JOBS ?= 2
# The headnode templates (SUITE:ARCH) the suite boots; tests/test_image.py boots each of them.
TEMPLATES ?= bookworm:amd64 bookworm:arm64 bullseye:amd64 trixie:amd64
# Debian 11's security archive is left out: this farm's package proxy lacks its kernel (404).
MIRRORS_bullseye ?= --mirror "deb http://deb.debian.org/debian bullseye main" \
	--mirror "deb http://deb.debian.org/debian bullseye-updates main"

.PHONY: test test-long deps deps-arm64 deps-test binfmt venv lock testguest template bench bench-sizes matrix demo demo-stop \
	demo-driver clean

# apt_install PACKAGES: install those of PACKAGES that are missing (a second run installs nothing).
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES))
	@apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt-get update -qq

deps-arm64: deps
	$(call apt_install,$(APT_ARM64_PACKAGES))

deps-test: deps-arm64
	$(call apt_install,$(APT_TEST_PACKAGES))

# arm64 templates run their packages' scripts through qemu-user-static: the kernel's binfmt_misc
# must be mounted (systemd does it at boot; containers may not) and the qemu-aarch64 entry enabled.
binfmt: deps-arm64
	@test -e /proc/sys/fs/binfmt_misc/status || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@test -e /proc/sys/fs/binfmt_misc/qemu-aarch64 || update-binfmts --enable qemu-aarch64

# Every package at the version constraints.txt pins (direct and transitive: the versions the suite
# passed with); `make lock` resolves them anew and rewrites it.
$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lock: deps
	scripts/lock.sh

# The test guest (oscarvt_dev/testguest.py: Debian cloud kernel + busybox/dropbear initramfs) is built,
# or taken from the cache, before the tests enter their network namespace, which has no network.
testguest: deps venv
	$(VENV)/bin/python -m oscarvt_dev.testguest

# The headnode templates (mmdebstrap), likewise built or taken from the cache first; a fresh
# arm64 one takes about 7 minutes (emulated package scripts, one core), an amd64 one about a minute.
# Each arch's templates build one after the other, the arches side by side (lines prefixed [ARCH]).
# Each template of the host's own arch is warmed once built (scripts/warm-template.sh: one headnode
# boots cold in the default shape and saves its state, in a private network namespace) while the
# emulated arch still builds, so the first headnodes of a fresh cache start warm too.
template: deps venv
	@case "$(TEMPLATES)" in *:arm64*) $(MAKE) --no-print-directory binfmt ;; esac
	@status=$$(mktemp -d); native=$$(dpkg --print-architecture); \
	for arch in $$(for t in $(TEMPLATES); do echo $${t#*:}; done | sort -u); do \
		echo 1 > $$status/$$arch; \
		( for target in $(TEMPLATES); do suite=$${target%:*}; [ "$${target#*:}" = $$arch ] || continue; \
			case $$suite in bullseye) mirrors='$(MIRRORS_bullseye)';; *) mirrors=;; esac; \
			eval $(VENV)/bin/oscarvt image build --suite $$suite --arch $$arch $$mirrors 2>&1 || exit; \
			[ $$arch != $$native ] || unshare --net scripts/warm-template.sh $(VENV)/bin/oscarvt $$suite $$arch 2>&1; \
		done; echo 0 > $$status/$$arch ) | sed -u "s/^/[$$arch] /" & \
	done; wait; \
	failed=$$(grep -L '^0$$' $$status/* 2>/dev/null); rm -rf $$status; \
	if [ -n "$$failed" ]; then echo "FAIL: template: the $$(basename -a $$failed | tr '\n' ' ')templates did not build (above)"; exit 1; fi

# The suite runs in a private network namespace: only loopback, nothing leaves the machine.
test: deps-test venv testguest template
	unshare --net sh -c 'ip link set lo up && exec $(VENV)/bin/pytest -n $(PYTEST_JOBS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)'

# The runs marked `long` that do not fit make test's 40 minutes (tests/test_bisect_svn.py: an SVN
# repository bisected automatically and from the force form, about ten builds; in tests/test_driver.py a node
# power-cycled after its network boot gave up, and ten nodes from the network), in a private network namespace.
test-long: deps-test venv testguest template
	unshare --net sh -c 'ip link set lo up && exec $(VENV)/bin/pytest -m long $(PYTEST_ARGS)'

# Boot, pipeline, Buildbot and throughput times as JSON (bench/*.py but matrix.py, which `make matrix`
# runs, and cluster_sizes.py, which `make bench-sizes` runs), in a private network namespace too.
bench: deps venv testguest template
	unshare --net sh -c 'ip link set lo up && for b in bench/*.py; do case $$b in bench/matrix.py|bench/cluster_sizes.py) \
		continue ;; esac; $(VENV)/bin/python $$b || exit 1; done'

# How the harness's cost grows with the cluster: `oscarvt run` of 1+2, 8, 16 and 32 nodes (long under
# TCG: the 32 nodes image from one emulated headnode CPU), one JSON line each, then the ratios.
SIZES_ARGS ?=
bench-sizes: deps venv template
	unshare --net sh -c 'ip link set lo up && exec $(VENV)/bin/python bench/cluster_sizes.py $(SIZES_ARGS)'

# Every cell of the matrix end to end: every suite on amd64 and arm64, CD and network boot (hours
# under TCG: arm64 templates take ~7 minutes each to build, arm64 clusters run emulated). The
# tests marked `matrix` first, then bench/matrix.py: one JSON line per cell, then the sum.
MATRIX_TEMPLATES ?= bullseye:amd64 bookworm:amd64 trixie:amd64 bullseye:arm64 bookworm:arm64 trixie:arm64
MATRIX_LANES ?= 1
matrix: deps-test venv testguest binfmt
	$(MAKE) template TEMPLATES="$(MATRIX_TEMPLATES)"
	unshare --net sh -c 'ip link set lo up && $(VENV)/bin/pytest -m matrix $(PYTEST_ARGS) \
		&& $(VENV)/bin/python bench/matrix.py --boots cdrom,network --lanes $(MATRIX_LANES)'

# The main job on this machine: a Buildbot master (waterfall at http://127.0.0.1:8010), a worker,
# an SMTP sink and a build of the example suite on a virtual cluster, started by a commit.
# They stay up for a look; `make demo-stop` stops them. (`make demo-driver`: oscarvt run alone.)
# The demo's own template only (bookworm amd64, built and warmed); make test and make matrix build the others.
DEMO_TEMPLATE := bookworm:amd64
demo: deps venv
	$(MAKE) --no-print-directory template TEMPLATES=$(DEMO_TEMPLATE)
	$(VENV)/bin/python scripts/demo.py

demo-stop:
	$(VENV)/bin/python scripts/demo.py stop

demo-driver: deps venv
	$(MAKE) --no-print-directory template TEMPLATES=$(DEMO_TEMPLATE)
	unshare --net sh -c 'ip link set lo up && exec scripts/demo-run.sh'

clean:
	rm -rf $(VENV) *.egg-info
