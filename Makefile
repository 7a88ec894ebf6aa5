# The two commands a newcomer needs: `make run` and `make test`.
# Both work on a fresh Debian machine with only Rust installed (rustup or not:
# `run` needs cargo alone; `test` also needs rustfmt and clippy, added with
# rustup when it is there).

CONFIG ?= conf/streamgate.yaml
CARGO ?= cargo
# Where cargo puts the binary: CARGO_TARGET_DIR when set, as cargo itself does.
BIN := $(or $(CARGO_TARGET_DIR),target)/release/streamgate
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps bench reload

## run: build the release binary and start streamgate on $(CONFIG)
run: deps
	$(CARGO) build --release
	$(BIN) -c $(CONFIG)

## test: install what is missing, then fmt check, clippy -D warnings, every test
test: deps test-deps lint-deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	$(MAKE) --no-print-directory contract-check
	$(MAKE) --no-print-directory deploy-check

# Pingora's zlib-ng build needs cmake, and the README's examples (and
# tests/grpc.rs's h2c upload with --http2-prior-knowledge) curl; a fresh Debian
# image has neither.
deps:
	@command -v cmake >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake; }
	@command -v curl >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq curl; }

# Only the tests need a real redis-server (tests/shared_limits.rs starts its
# own, on a free port).
.PHONY: test-deps
test-deps:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

# `make test`'s linters. Nothing to do when `cargo fmt` / `cargo clippy` already
# run (whoever installed them); else rustup adds them; a toolchain without rustup
# (Debian's cargo, a distribution image) is told what is missing and how to get it.
.PHONY: lint-deps
lint-deps:
	@cargo fmt --version >/dev/null 2>&1 || { command -v rustup >/dev/null && rustup component add rustfmt; } || \
	  { echo "make test needs rustfmt (cargo fmt), and this toolchain has no rustup to add it: install it with the toolchain's packages (Debian: apt-get install rustfmt)"; exit 1; }
	@cargo clippy --version >/dev/null 2>&1 || { command -v rustup >/dev/null && rustup component add clippy; } || \
	  { echo "make test needs clippy (cargo clippy), and this toolchain has no rustup to add it: install it with the toolchain's packages (Debian: apt-get install rust-clippy)"; exit 1; }

## bench: install wrk/nginx/npm packages, build release, benchmark on loopback (bench/run.sh)
bench: deps
	bash bench/run.sh

## bench-h2: install h2load/nginx, build release, HTTP/2 and gRPC through streamgate vs direct (bench/h2.sh)
.PHONY: bench-h2
bench-h2: deps
	bash bench/h2.sh

## bench-profile: valgrind/strace, build release, instructions, allocations and syscalls per proxied request vs bare Pingora (bench/profile.sh)
.PHONY: bench-profile
bench-profile: deps
	bash bench/profile.sh

## bench-tracing: install wrk/nginx, build release, token and proxied requests with span export on vs off (bench/tracing.sh)
.PHONY: bench-tracing
bench-tracing: deps
	bash bench/tracing.sh

## soak: build release, 10 min of mixed traffic on loopback, growth verdict (bench/soak.sh; SOAK_SECONDS=60 to try it)
.PHONY: soak
soak: deps
	bash bench/soak.sh

## contract-check: every shipped config against conf/streamgate.schema.json (check-jsonschema), schemathesis against a running streamgate's /openapi.json (tests/contract/check.sh)
.PHONY: contract-check
contract-check: deps
	bash tests/contract/check.sh

## deploy-check: lint the Dockerfiles, render and validate deploy/kubernetes and the Helm chart, pod-shaped e2e of an example and of an injected pod (deploy/check.sh)
.PHONY: deploy-check
deploy-check: deps
	bash deploy/check.sh

## reload: hand the running streamgate's sockets to a new one on $(CONFIG), no request lost
# The new process takes over over server.upgrade_sock; the old one (pid from
# server.pid_file) is told to hand over with SIGQUIT once the new one waits,
# and only if that pid is a running streamgate: a pid file left by a process
# that died may name an unrelated process by now.
PID_FILE ?= /tmp/streamgate.pid
UPGRADE_SOCK ?= /tmp/streamgate_upgrade.sock
# Where the new process's output goes (it outlives make).
RELOAD_LOG ?= streamgate.log
reload:
	$(BIN) -t -c $(CONFIG)
	@test -s $(PID_FILE) || { echo "no running streamgate ($(PID_FILE) is missing)"; exit 1; }
	@old=$$(cat $(PID_FILE)); \
	  [ "$$(cat /proc/$$old/comm 2>/dev/null)" = streamgate ] || \
	  { echo "pid $$old in $(PID_FILE) is not a running streamgate (a stale pid file?): nothing signalled"; exit 1; }; \
	  rm -f $(UPGRADE_SOCK); \
	  nohup $(BIN) -u -c $(CONFIG) >>$(RELOAD_LOG) 2>&1 & \
	  for i in $$(seq 100); do [ -S $(UPGRADE_SOCK) ] && break; sleep 0.1; done; \
	  kill -QUIT $$old && echo "streamgate $$old hands over to the new process (logs: $(RELOAD_LOG))"

## demo: build, start a demo app and streamgate in front of it on loopback, print commands to try every identity mode (demo/run.sh; DEMO_CHECK=1 runs and asserts them, then exits)
.PHONY: demo
demo: deps
	bash demo/run.sh $(if $(DEMO_CHECK),--check)
