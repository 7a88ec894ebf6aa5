# The two commands a newcomer needs: `make run` and `make test`.
# Both work on a fresh Debian machine with only Rust installed.

CONFIG ?= conf/streamgate.yaml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps fmt-check clippy unit build bench

## run: build the release binary and start streamgate on $(CONFIG)
run: deps
	cargo build --release
	./target/release/streamgate -c $(CONFIG)

## test: install what is missing, then fmt check, clippy -D warnings, every test
test: deps
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test
	$(MAKE) --no-print-directory deploy-check

# Pingora's zlib-ng build needs cmake; a fresh Debian image does not have it.
deps:
	@command -v cmake >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake; }
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

## bench: install wrk/nginx/npm packages, build release, benchmark on loopback (bench/run.sh)
bench: deps
	bash bench/run.sh

## deploy-check: lint deploy/Dockerfile, render and validate deploy/kubernetes, pod-shaped e2e (deploy/check.sh)
.PHONY: deploy-check
deploy-check: deps
	bash deploy/check.sh
