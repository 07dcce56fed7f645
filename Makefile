# keel: the two commands a user needs are `make demo` and `make test`.
CARGO      ?= cargo
TARGET     := x86_64-unknown-linux-gnu
BIN        := target/$(TARGET)/release
DEMO_DIR   := target/demo

.PHONY: all deps check-deps build demo test fuzz bench-boot bench-init bench-run bench-image clean

all: build

deps:
	@scripts/install-deps.sh

# Verify (install nothing) every command and file the build and the tests use; names
# what is missing, e.g. "install-deps: missing: qemu-img (qemu-utils)".
check-deps: deps
	@scripts/install-deps.sh --check

build: deps
	$(CARGO) build --release --workspace --bins

# Build examples/demo/host.toml and boot it in QEMU (Ctrl-C powers it off cleanly), with
# a persistent /var on target/demo/var.img (made on the first run) and the demo's
# first-boot config, whose user ops gets the demo's SSH key. From another terminal:
#   target/x86_64-unknown-linux-gnu/release/keel ctl --socket target/demo/control.sock ps
#   curl http://localhost:8080/
#   ssh -p 2222 -i target/demo/ssh/id_ed25519 ops@localhost
demo: build $(DEMO_DIR)/config.ign
	$(BIN)/keel-build run examples/demo/host.toml --out $(DEMO_DIR) \
		--control-socket $(DEMO_DIR)/control.sock --hostfwd tcp:8080-:80 --hostfwd tcp:2222-:22 \
		--disk $(DEMO_DIR)/var.img --config $(DEMO_DIR)/config.ign

# The demo's SSH key pair: DEMO ONLY, made here on the first `make demo` and kept in
# target/demo (never committed, never used anywhere else).
DEMO_KEY_PLACEHOLDER := ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyOnlyForTheKeelDemo ops@demo
$(DEMO_DIR)/ssh/id_ed25519:
	mkdir -p $(DEMO_DIR)/ssh
	ssh-keygen -q -t ed25519 -N '' -C ops@keel-demo -f $@

# examples/demo/config.ign with the placeholder key of ops replaced by the demo key.
$(DEMO_DIR)/config.ign: examples/demo/config.ign $(DEMO_DIR)/ssh/id_ed25519
	sed "s|$(DEMO_KEY_PLACEHOLDER)|$$(cat $(DEMO_DIR)/ssh/id_ed25519.pub)|" $< > $@.tmp
	grep -qF "$$(cat $(DEMO_DIR)/ssh/id_ed25519.pub)" $@.tmp
	mv $@.tmp $@

# The demo host booted 5 times under QEMU: kernel start -> exec of PID 1 (the kernel's
# share), exec of PID 1 -> `keel: ready` (keel's share) and the total, as medians, from
# the console's timestamps; PID 1's RSS at ready; image sizes (KEEL_QEMU_ACCEL=kvm for KVM).
bench-boot: build
	$(CARGO) run --release -p keel-qemu-tests --bin keel-boot-bench -- examples/demo/host.toml 5

# keel init vs Debian's tini: 1000 orphans reaped in a pid namespace, 5 runs each (needs root).
bench-init: deps
	$(CARGO) build --release -p keel-init -p keel-qemu-tests --bins
	$(BIN)/keel-init-bench 1000 5

# keel run vs crun: /bin/true in a busybox rootfs, start latency (30 runs) and
# 100 sequential containers (3 repetitions), as ratios keel/crun (needs root).
bench-run: deps
	$(CARGO) build --release --workspace --bins
	$(BIN)/keel-run-bench 30 100 3

# keel's image import vs `umoci unpack`: a 10-layer OCI image (made by umoci from a
# busybox rootfs), time and disk use, medians of 5 runs, as ratios keel/umoci (needs root).
bench-image: deps
	$(CARGO) build --release -p keel-init -p keel-qemu-tests --bins
	$(BIN)/keel-image-bench 5

# Every test: unit, host namespace tests and QEMU boots (two guests at a time at most),
# after installing what is missing and checking that every tool is there.
test: check-deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace -- --test-threads=2

# Every parser of outside input under libFuzzer (cargo-fuzz, installed when missing),
# FUZZ_SECS seconds per target (default 60) from the committed corpus in fuzz/corpus;
# crashes land in fuzz/artifacts. See scripts/fuzz.sh for FUZZ_TARGETS and FUZZ_DRY_RUN.
fuzz:
	@scripts/fuzz.sh

clean:
	$(CARGO) clean
