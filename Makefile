# cloudsync: `make demo` runs the main job, `make test` runs every test.
CARGO ?= cargo
ROOT := $(CURDIR)
DEMO := $(ROOT)/demo
BIN := $(ROOT)/target/release/cloudsync
# Test servers' binaries built from crates.io live outside the repo.
TOOLS := $(HOME)/.cache/cloudsync-tools
export CLOUDSYNC_TOOLS := $(TOOLS)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup node-setup servers bench-tools build demo test node-test campaigns bench fmt lint clean

all: build

# What the build needs besides the Rust toolchain: the component target, and
# wac (from crates.io), which composes the engine for WASI alone.
setup:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@[ -x $(TOOLS)/bin/wac ] || $(CARGO) install wac-cli --version 0.12.0 --locked --no-default-features --features wit --root $(TOOLS)

# The real servers the tests start on loopback, and a third-party client:
# Apache httpd with mod_dav (WebDAV) and rclone from Debian's packages,
# s3s-fs (S3) from crates.io.
servers:
	@if [ ! -x /usr/sbin/apache2 ] || ! command -v htpasswd >/dev/null || ! command -v rclone >/dev/null; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq apache2 apache2-utils rclone >/dev/null; \
	fi
	@[ -x $(TOOLS)/bin/s3s-fs ] || $(CARGO) install s3s-fs --version 0.14.1 --locked --features binary --root $(TOOLS)

# The native command line, and target/cloudsync-wasi.wasm (the engine, the
# WASI adapter and the command composed; tests/build.rs composes it) with
# cloudsync-wasi-run, a runtime that links WASI and nothing else.
build: setup
	$(CARGO) build --release -p cloudsync
	$(CARGO) build --release -p cloudsync-tests --bin cloudsync-wasi-run

# The main job on the embedded default: a local folder plays the cloud. The
# app's folder has notes, the cloud a 128 MiB photo (read at 64 MiB/s so the
# progress bar can be watched) and a document; `cloudsync sync` makes them
# equal both ways. Then one note is edited on both sides: the next sync keeps
# both versions. `status` shows each file's state; `diff` checks the bytes.
DEMO_CLI := $(BIN) --root $(DEMO)/device --cloud dir://$(DEMO)/cloud --bwlimit 64M
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/cloud/cloudsync.cli/photos $(DEMO)/device/apps/cloudsync.cli/cloud/notes
	@head -c 134217728 /dev/urandom > $(DEMO)/cloud/cloudsync.cli/photos/sunrise.raw
	@echo "# Plans" > $(DEMO)/cloud/cloudsync.cli/plans.md
	@echo "buy milk" > $(DEMO)/device/apps/cloudsync.cli/cloud/notes/todo.txt
	@echo "call Ana" > $(DEMO)/device/apps/cloudsync.cli/cloud/notes/calls.txt
	@echo "cloud: $(DEMO)/cloud (a plain folder); device: $(DEMO)/device"
	$(DEMO_CLI) sync
	@echo "buy oat milk" > $(DEMO)/device/apps/cloudsync.cli/cloud/notes/todo.txt
	@echo "buy milk and bread" > $(DEMO)/cloud/cloudsync.cli/notes/todo.txt
	@echo "edited notes/todo.txt on both sides:"
	$(DEMO_CLI) sync
	$(DEMO_CLI) status
	@diff -r $(DEMO)/cloud/cloudsync.cli $(DEMO)/device/apps/cloudsync.cli/cloud \
		&& echo "verified: the app's folder and the cloud hold the same files, byte for byte"

# Every test: the engine's native unit tests, the host's unit and command-line
# tests, and the integration tests that load the real component, against the
# local folder, WebDAV and S3 servers.
test: setup servers node-setup
	$(CARGO) test -p cloudsync-contract -p cloudsync-guest -p cloudsync-wasi-adapter -p cloudsync -p cloudsync-tests
	$(MAKE) node-test

# The Node package (host/node): Node and its npm packages (jco's transpiler,
# the WASI shim, a TypeScript stripper), pinned by its package-lock.json.
node-setup:
	@command -v node >/dev/null && command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	cd host/node && npm ci --no-audit --no-fund --loglevel=error

# The engine for the core world (built by `cargo build -p cloudsync-tests`),
# transpiled by jco; then every seed example and the API tests in Node.
node-test: node-setup servers
	$(CARGO) build -p cloudsync-tests
	cd host/node && node scripts/build.mjs && node --test test/*.test.mjs

# Longer campaigns than `make test` runs (which has 10,000 simulated worlds,
# 240 kills, 3 devices x 50 rounds per backend, 12 faulted rounds, 8 rounds
# of racing writers): 200,000 worlds, five times the rest, 60 racing rounds.
campaigns: setup servers
	SYNC_SEEDS=200000 $(CARGO) test -p cloudsync-guest --release random_worlds
	CAMPAIGN_SCALE=5 $(CARGO) test -p cloudsync --test campaigns -- --test-threads 1
	RACE_ROUNDS=60 $(CARGO) test -p cloudsync-tests --test backends racing

# What the sync benchmark compares against: rclone (above), rsync and unison.
bench-tools:
	@{ command -v unison && command -v rsync; } >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq unison rsync >/dev/null; }

bench: setup servers bench-tools build
	$(CARGO) bench -p cloudsync-tests

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) clippy -p cloudsync-contract -p cloudsync -p cloudsync-tests -p cloudsync-guest -p cloudsync-wasi-adapter --all-targets -- -D warnings
	$(CARGO) clippy -p cloudsync-guest -p cloudsync-wasi-adapter -p cloudsync-wasi-command --target wasm32-wasip2 --target-dir target/guest-core -- -D warnings
	$(CARGO) clippy -p cloudsync-guest --features native --target wasm32-wasip2 --target-dir target/guest -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DEMO)
