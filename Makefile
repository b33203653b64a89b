# cloudsync: `make demo` runs the main job, `make test` runs every test.
CARGO ?= cargo
ROOT := $(CURDIR)
DEMO := $(ROOT)/demo
BIN := $(ROOT)/target/release/cloudsync
# Test servers' binaries built from crates.io live outside the repo.
TOOLS := $(HOME)/.cache/cloudsync-tools
export CLOUDSYNC_TOOLS := $(TOOLS)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup servers bench-tools build demo test bench fmt lint clean

all: build

# What the build needs besides the Rust toolchain: the component target.
setup:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# The real servers the tests start on loopback, and a third-party client:
# Apache httpd with mod_dav (WebDAV) and rclone from Debian's packages,
# s3s-fs (S3) from crates.io.
servers:
	@if [ ! -x /usr/sbin/apache2 ] || ! command -v htpasswd >/dev/null || ! command -v rclone >/dev/null; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq apache2 apache2-utils rclone >/dev/null; \
	fi
	@[ -x $(TOOLS)/bin/s3s-fs ] || $(CARGO) install s3s-fs --version 0.14.1 --locked --features binary --root $(TOOLS)

build: setup
	$(CARGO) build --release -p cloudsync

# The main job on the embedded default: a local folder plays the cloud, and a
# 128 MiB photo is downloaded from it through CloudFileCache with a live
# progress bar (held to 32 MiB/s so that it can be watched), then its final
# state is printed.
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/cloud/cloudsync.cli/photos
	@head -c 134217728 /dev/urandom > $(DEMO)/cloud/cloudsync.cli/photos/sunrise.raw
	@echo "cloud: $(DEMO)/cloud (a plain folder); device: $(DEMO)/device"
	$(BIN) --root $(DEMO)/device --cloud dir://$(DEMO)/cloud --bwlimit 32M download photos/sunrise.raw
	@cmp $(DEMO)/cloud/cloudsync.cli/photos/sunrise.raw $(DEMO)/device/apps/cloudsync.cli/cloud/photos/sunrise.raw \
		&& echo "verified: the local copy is byte-identical to the cloud file"

# Every test: the engine's native unit tests, the host's unit and command-line
# tests, and the integration tests that load the real component, against the
# local folder, WebDAV and S3 servers.
test: setup servers
	$(CARGO) test -p cloudsync-guest -p cloudsync -p cloudsync-tests

# What the sync benchmark compares against: rclone (above) and unison.
bench-tools:
	@command -v unison >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq unison >/dev/null; }

bench: setup servers bench-tools build
	$(CARGO) bench -p cloudsync-tests

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) clippy -p cloudsync -p cloudsync-tests -p cloudsync-guest --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DEMO)
