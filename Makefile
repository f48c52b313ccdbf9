# shmring — one-command set-up, demo, tests and benchmarks.
# Works on a fresh Debian 12 machine as root or via sudo. Every target is idempotent.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages `make deps` installs (checked with dpkg, installed if missing), by
# what needs them. e2e/tests/packaging/deps.rs checks that every GStreamer element and tool the
# tests, the examples and the README's recipes use comes from one of these (or from
# what they depend on); `make deps-list` prints them for it.
#  build: compiler, pkg-config and GStreamer's headers for the -sys crates
DEB_BUILD := build-essential pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
#  run and test: gst-launch-1.0/gst-inspect-1.0 (tools), the core, base and good elements;
#  x264enc (ugly) for the sandboxed encoder; gst-discoverer-1.0 (base-apps) to check its
#  MP4, which needs an H.264 decoder: avdec_h264 (libav), also in the README's recipes;
#  h264parse, mpegtsmux, tsdemux, srtsink/srtsrc (bad) in the README's recipes, where
#  bad also has the bench's rivals; PyGObject for the Python subscriber of
#  audio-between-apps; gst-play-1.0 and gst-device-monitor-1.0 (base-apps) for the
#  URI and device provider tests; bubblewrap for the sandboxed consumer tests;
#  dbus-daemon for the D-Bus hand-off's private session bus; python3-venv, numpy and
#  pytest for the Python package's virtual environment (make python)
DEB_RUN := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav \
  gstreamer1.0-plugins-base-apps python3-gi gir1.2-gstreamer-1.0 bubblewrap dbus-daemon \
  python3-venv python3-numpy python3-pytest tmux
DEB_PACKAGES := $(DEB_BUILD) $(DEB_RUN)
# install-debs PACKAGES: apt-get install those of PACKAGES that dpkg does not list as installed
define install-debs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "$@: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "$@: Debian packages present"; fi
endef
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LOOM_TARGET := target/loom

.PHONY: all deps deps-list build deb python python-test python-brightness demo ring-demo frame-demo dbus-handoff sandboxed-encoder audio-between-apps test test-gst lint loom valgrind chaos fuzz bench bench-load install uninstall clean

all: build

## deps: install what is missing (Debian packages, Rust components) and nothing else
deps:
	$(call install-debs,$(DEB_PACKAGES))
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo not found: install Rust (rustup) first" >&2; exit 1; }
	@for c in rustfmt clippy; do \
	  rustup component list --installed 2>/dev/null | grep -q "^$$c" || { echo "deps: adding rustup component $$c"; rustup component add $$c; }; \
	done

## deps-list: the Debian packages deps and bench install, one line each (read by the
## test that checks every element and tool used comes from them)
deps-list:
	@echo "deps: $(DEB_PACKAGES)"
	@echo "bench: $(BENCH_PACKAGES)"

build: deps
	$(CARGO) build --release --workspace --all-targets

## demo: the main job — two gst-launch-1.0 processes pass live 1080p video through shmring
demo: deps
	$(CARGO) build --release -p examples --example gst-demo
	./target/release/examples/gst-demo 3

## ring-demo: two processes streaming 64 KiB messages through the sealed ring alone
ring-demo: deps
	$(CARGO) build --release -p examples --example ring-demo
	./target/release/examples/ring-demo 3

## frame-demo: a producer and two consumer processes on the frame channel
frame-demo: deps
	$(CARGO) build --release -p examples --example frame-demo
	./target/release/examples/frame-demo 3

## sandboxed-encoder: a capture process feeds an encoder process it started with a
## socket fd; the encoder locks itself down (Landlock, seccomp) and writes H.264 MP4
sandboxed-encoder: deps
	$(CARGO) build --release -p examples --example sandboxed-capture --example sandboxed-encoder
	./target/release/examples/sandboxed-capture 150 target/sandboxed.mp4 /etc/hostname
	gst-discoverer-1.0 target/sandboxed.mp4

## dbus-handoff: a camera service on a private session bus hands a client its
## stream as a socket fd (OpenStream); the client receives 90 frames through it
dbus-handoff: deps
	$(CARGO) build --release -p examples --example dbus-service --example dbus-client
	@set -e; out=$$(dbus-daemon --session --fork --print-address=1 --print-pid=1); \
	  export DBUS_SESSION_BUS_ADDRESS=$$(echo "$$out" | sed -n 1p); bus=$$(echo "$$out" | sed -n 2p); \
	  trap 'kill $$bus' EXIT; \
	  ./target/release/examples/dbus-service 150 & svc=$$!; sleep 1; \
	  ./target/release/examples/dbus-client 90; wait $$svc

## audio-between-apps: a publisher and two Python subscribers, one joining late
audio-between-apps: deps
	$(CARGO) build --release -p gst-plugin-shmring
	GST_PLUGIN_PATH=$(CURDIR)/target/release examples/audio-between-apps/run.sh 5

## python: the Python package (python/: PyO3, built by maturin) as a wheel,
## target/wheels/shmring-VERSION-cp311-abi3-linux_ARCH.whl, installed into the virtual
## environment target/python of Debian's python3 (which sees Debian's numpy and
## pytest); maturin, a Rust program, comes from crates.io (cargo install) if missing.
## PYTHON_PROFILE=dev builds the debug extension
PYTHON3 ?= /usr/bin/python3
PY_VENV := target/python
PY := $(PY_VENV)/bin/python
PYTHON_PROFILE ?= release
# The extension's own target directory (see the root Cargo.toml's exclude).
PY_TARGET := target/python-build
python: deps
	@command -v maturin >/dev/null || { echo "python: installing maturin"; $(CARGO) install --locked --no-default-features maturin; }
	@grep -qs '^include-system-site-packages = true' $(PY_VENV)/pyvenv.cfg || $(PYTHON3) -m venv --clear --system-site-packages $(PY_VENV)
	rm -f target/wheels/shmring-*.whl
	maturin build --locked --profile $(PYTHON_PROFILE) --compatibility linux \
	  -m python/Cargo.toml --target-dir $(PY_TARGET) -i $(PY) -o target/wheels
	$(PY) -m pip install -q --no-index --no-deps --force-reinstall target/wheels/shmring-*.whl
	@echo "python: installed; try $(PY) -c 'import shmring; help(shmring)'"

## python-test: the Python package's pytest suite against real producer and
## consumer processes (the plugin and test peers of this build)
python-test: python
	$(CARGO) build -p gst-plugin-shmring -p e2e -p shmring-cli --bins
	SHMRING_TARGET_DIR=$(CURDIR)/target/debug timeout --kill-after=30 $(TEST_TIMEOUT) \
	  $(PY) -m pytest -q -o cache_dir=target/pytest-cache python/tests

## python-brightness: a live camera process (gst-launch-1.0 videotestsrc) and a Python
## app printing each frame's mean brightness as it comes (PYTHON_FRAMES of them)
PYTHON_FRAMES ?= 90
python-brightness: python
	$(CARGO) build --release -p gst-plugin-shmring
	GST_PLUGIN_PATH=$(CURDIR)/target/release PY=$(CURDIR)/$(PY) examples/python-brightness/run.sh $(PYTHON_FRAMES)

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path python/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path python/Cargo.toml --target-dir $(PY_TARGET) --all-targets -- -D warnings
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --workspace --no-deps --quiet

## loom: model-check the ring's index and wake-up protocol
loom: deps
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET) $(CARGO) test -p shmring --test loom --release

TEST_TIMEOUT ?= 900
## test: deps, format, lints, every test (unit, doc, cross-process, the Python
## package's pytest suite, loom)
test: lint
	$(MAKE) --no-print-directory test-gst
	$(MAKE) --no-print-directory loom

## test-gst: what depends on the GStreamer the machine runs: every test (unit, doc,
## cross-process) and the Python package's pytest suite, without the lints and loom
## (the same on every GStreamer); CI runs it on Debian 13 and testing after a whole
## make test on Debian 12
test-gst: deps
	$(CARGO) build -p gst-plugin-shmring   # libgstshmring.so, which the gst-launch tests load
	$(CARGO) test --workspace --no-run
	@# A hang is a failure, not a CI timeout: the suite runs in ~2 min here.
	timeout --kill-after=30 $(TEST_TIMEOUT) $(CARGO) test --workspace
	$(MAKE) --no-print-directory python-test PYTHON_PROFILE=dev

## chaos: the chaos test at full length (make test runs 40 cycles)
CHAOS_CYCLES ?= 200
chaos: deps
	CHAOS_CYCLES=$(CHAOS_CYCLES) $(CARGO) test -p e2e --test chaos -- --nocapture

## valgrind: the ring's test binaries under memcheck, and the cross-process ones
## (two processes passing frames, hostile peers, a connection flood, lying producers
## against gst-launch-1.0 shmringsrc) with their peer processes under memcheck too
valgrind: deps
	@command -v valgrind >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind; }
	$(CARGO) build -p gst-plugin-shmring   # libgstshmring.so, which the lying producers' gst-launch victims load
	$(CARGO) test -p shmring -p e2e --no-run --message-format=json 2>/dev/null \
	  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep -E '/(ring|hostile_peer|fd_passing|ring_cross_process|frame|frame_cross_process|hostile_producers|adversaries|lying_producer)-[0-9a-f]+$$' \
	  | while read -r t; do echo "valgrind $$t"; valgrind --error-exitcode=9 --quiet --trace-children=yes "$$t" --test-threads=2 || exit 1; done

## fuzz: each fuzz target for FUZZ_SECONDS (needs the nightly toolchain; installs cargo-fuzz)
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := wire_decode desc_validate ring_header meta_decode video_frame
# meta_decode and video_frame go through GStreamer's own caps/structure parser and
# video converter; the parser leaks on some
# malformed input (C code outside this project, uninstrumented); crashes and panics
# are still caught.
FUZZ_FLAGS_meta_decode := -detect_leaks=0
fuzz: deps
	@rustup run nightly rustc --version >/dev/null 2>&1 || { echo "fuzz: no nightly toolchain; the committed corpus is replayed by 'make test' instead"; exit 0; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  flags=""; asan=""; case "$$t" in meta_decode|video_frame) flags="$(FUZZ_FLAGS_meta_decode)"; asan=detect_leaks=0;; esac; \
	  (cd fuzz && ASAN_OPTIONS=$$asan $(CARGO) +nightly fuzz run $$t ../target/fuzz-corpus/$$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) $$flags) || exit 1; \
	done

## bench: the ring and frame channel against a unix socket, shmem-ipc and memcpy, then
## the GStreamer elements against every rival transport this GStreamer has (not a test).
## Writes target/bench/{ring,gst}.json, gst.md, video.png, latency.png.
# Beyond `make deps`: the plots' font (the rivals shmsink/shmsrc, gdppay/gdpdepay and, on
# GStreamer >= 1.24, unixfdsink/unixfdsrc are in gstreamer1.0-plugins-bad, which deps has).
BENCH_PACKAGES := fonts-dejavu-core
bench: deps
	$(call install-debs,$(BENCH_PACKAGES))
	$(CARGO) bench -p shmring-bench --bench ring
	$(CARGO) bench -p shmring-bench --bench gst

## bench-load: the GStreamer bench again beside one busy process (three runnable
## threads on two cores, as on a machine that also encodes): target/bench/gst-load.*
bench-load: deps
	$(call install-debs,$(BENCH_PACKAGES))
	SHMRING_BENCH_LOAD=1 $(CARGO) bench -p shmring-bench --bench gst

## install: libgstshmring.so into the system's GStreamer plugin directory and the
## `shmring` tool into /usr/local/bin, or with PREFIX=~/.local into the user's
## (~/.local/share/gstreamer-1.0/plugins, which GStreamer searches by itself, and
## ~/.local/bin); no GST_PLUGIN_PATH needed afterwards.
## PROFILE=dev installs the debug build; SKIP_BUILD=1 installs what is built (tests).
PROFILE ?= release
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
PLUGIN_DIR = $(if $(PREFIX),$(PREFIX)/share/gstreamer-1.0/plugins,$(shell pkg-config --variable=pluginsdir gstreamer-1.0))
BIN_DIR = $(if $(PREFIX),$(PREFIX)/bin,/usr/local/bin)
INSTALL_SUDO = $(if $(PREFIX),,$(SUDO))
install: $(if $(SKIP_BUILD),,deps)
	$(if $(SKIP_BUILD),,$(CARGO) build --profile $(PROFILE) -p gst-plugin-shmring -p shmring-cli)
	@test -n "$(PLUGIN_DIR)" || { echo "install: no plugin directory (pkg-config gstreamer-1.0)" >&2; exit 1; }
	$(INSTALL_SUDO) install -D -m 0644 target/$(PROFILE_DIR)/libgstshmring.so $(DESTDIR)$(PLUGIN_DIR)/libgstshmring.so
	$(INSTALL_SUDO) install -D -m 0755 target/$(PROFILE_DIR)/shmring $(DESTDIR)$(BIN_DIR)/shmring
	@echo "installed $(DESTDIR)$(PLUGIN_DIR)/libgstshmring.so: try gst-inspect-1.0 shmring"
	@echo "installed $(DESTDIR)$(BIN_DIR)/shmring: try shmring top"

uninstall:
	$(INSTALL_SUDO) rm -f $(DESTDIR)$(PLUGIN_DIR)/libgstshmring.so $(DESTDIR)$(BIN_DIR)/shmring
	@echo "removed $(DESTDIR)$(PLUGIN_DIR)/libgstshmring.so and $(DESTDIR)$(BIN_DIR)/shmring"

## deb: a Debian package of the plugin, target/deb/gstreamer1.0-shmring_VERSION_ARCH.deb,
## for GStreamer's plugin directory (install: apt-get install ./target/deb/FILE).
## PROFILE=dev packages the debug build; SKIP_BUILD=1 packages what is built (tests).
DEB_NAME := gstreamer1.0-shmring
DEB_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE := target/deb/$(DEB_NAME)_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_ROOT := target/deb/root
deb: $(if $(SKIP_BUILD),,deps)
	$(if $(SKIP_BUILD),,$(CARGO) build --profile $(PROFILE) -p gst-plugin-shmring -p shmring-cli)
	@test -n "$(PLUGIN_DIR)" || { echo "deb: no plugin directory (pkg-config gstreamer-1.0)" >&2; exit 1; }
	rm -rf $(DEB_ROOT)
	install -D -m 0644 target/$(PROFILE_DIR)/libgstshmring.so $(DEB_ROOT)$(PLUGIN_DIR)/libgstshmring.so
	strip --strip-unneeded $(DEB_ROOT)$(PLUGIN_DIR)/libgstshmring.so
	install -D -m 0755 target/$(PROFILE_DIR)/shmring $(DEB_ROOT)/usr/bin/shmring
	strip --strip-unneeded $(DEB_ROOT)/usr/bin/shmring
	install -D -m 0644 README.md $(DEB_ROOT)/usr/share/doc/$(DEB_NAME)/README.md
	install -D -m 0644 SECURITY.md $(DEB_ROOT)/usr/share/doc/$(DEB_NAME)/SECURITY.md
	install -D -m 0644 LICENSE-MIT $(DEB_ROOT)/usr/share/doc/$(DEB_NAME)/copyright
	mkdir -p $(DEB_ROOT)/DEBIAN
	@{ echo "Package: $(DEB_NAME)"; \
	  echo "Version: $(DEB_VERSION)"; \
	  echo "Architecture: $(DEB_ARCH)"; \
	  echo "Maintainer: shmring developers <shmring@example.invalid>"; \
	  echo "Section: libs"; \
	  echo "Priority: optional"; \
	  echo "Installed-Size: $$(du -sk $(DEB_ROOT) | cut -f1)"; \
	  echo "Depends: libc6 (>= 2.34), libgcc-s1, libglib2.0-0 (>= 2.62), libgstreamer1.0-0 (>= 1.22), libgstreamer-plugins-base1.0-0 (>= 1.22)"; \
	  echo "Description: GStreamer elements shmringsink and shmringsrc"; \
	  echo " Zero-copy raw media between untrusted processes over sealed shared memory:"; \
	  echo " shmringsink serves buffers, caps, events and metas to shmringsrc consumers"; \
	  echo " in other processes, none of which can crash, stall or write to it. With a"; \
	  echo " shmring:// URI handler and a device provider for named producers, and"; \
	  echo " the shmring tool: shmring top shows every producer and consumer live."; \
	} > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --root-owner-group --build $(DEB_ROOT) $(DEB_FILE)
	@echo "built $(DEB_FILE): install it with apt-get install ./$(DEB_FILE)"

clean:
	$(CARGO) clean
