# One-stop entry points.  Each target installs what it needs on a fresh Debian 12 or Ubuntu
# 24.04 machine (the Debian packages that are missing, through scripts/apt-need, then the
# venv), so nothing is done by hand.  `make fresh-check` proves it on a new Debian 12 root.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?=
APT_NEED := scripts/apt-need

# Debian packages, split by the target that needs them.  Each list holds only what that
# target uses beyond a stock system with python3, make and curl.
#   make run:   building .venv (Debian's python3 has no ensurepip without python3-venv).
#               No Python dependency needs compiling (wheels), so no compiler either.
RUN_APT := python3-venv
RUN_WHY := python3 -m venv needs ensurepip, which Debian ships in python3-venv
#   make test:  what the tests start or call: redis-server (Redis cache, scaled topology),
#               skopeo and umoci (the end-to-end suite builds and copies images with them).
#               moto, the S3 the tests talk to, is a Python dependency (pyproject.toml).
#               iproute2 and iptables: replicas as separate hosts (network namespaces) and
#               real partitions between them.
#               prometheus: its promtool lints the /metrics exposition.
#               systemd: tests/deploy checks deploy/systemd/ocistore.service with its
#               systemd-analyze (verify, security).  kubectl (tests/deploy renders the
#               Kubernetes overlays with `kubectl kustomize`) is no Debian package at a usable
#               version (Debian 12's kubernetes-client is 1.20, without kustomize v5): it
#               must be on PATH, as it is on this project's machines.
#               slapd and ldap-utils: the LDAP tests run a slapd of their own (own config,
#               own loopback ports; the system's slapd is never used) and load it with
#               slapadd/ldapadd. podman: the bearer-token tests pull and push with it.
#               chromium: the web page's tests drive Debian's browser with Playwright (from
#               PyPI, never `playwright install`: no browser is downloaded).
TEST_APT := $(RUN_APT) redis-server skopeo umoci iproute2 iptables prometheus systemd slapd ldap-utils podman chromium
TEST_WHY := the tests run redis-server, skopeo, umoci, podman, systemd-analyze and a slapd of their own with ldap-utils, make hosts and partitions with ip and iptables, lint /metrics with promtool (package prometheus) and drive the web page in chromium; .venv needs python3-venv
#   make bench: the peer registry and the raw sha256 baseline.
BENCH_APT := $(TEST_APT) docker-registry openssl
BENCH_WHY := the benchmark compares against docker-registry and openssl's sha256 speed

.PHONY: install run test bench lint apt-test apt-bench fresh-check

# .venv holds exactly the locked versions (requirements-dev.lock: pyproject.toml with its dev
# extra, at the image's runtime pins), so a new upstream release changes nothing here until
# the lock is regenerated on purpose (README, "Locked dependencies").  The build backend comes
# from the image's build lock, so the editable install fetches nothing unpinned either.
DEV_LOCK := requirements-dev.lock
BUILD_LOCK := deploy/requirements-build.lock

$(BIN)/ocistore: pyproject.toml $(DEV_LOCK) $(BUILD_LOCK)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ocistore needs Python >= 3.11; $(PY) is $$($(PY) -V 2>&1)" >&2; exit 1; }
	@$(APT_NEED) "make install" "$(RUN_WHY)" $(RUN_APT)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK) -r $(BUILD_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

install: $(BIN)/ocistore

apt-test:
	@$(APT_NEED) "make test" "$(TEST_WHY)" $(TEST_APT)

apt-bench:
	@$(APT_NEED) "make bench" "$(BENCH_WHY)" $(BENCH_APT)

run: install
	$(BIN)/ocistore serve $(CONFIG)

test: apt-test install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

bench: apt-bench install
	$(BIN)/python bench/bench.py

lint: install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Slow (a new Debian root, then make run and make test inside it): not part of make test.
fresh-check:
	scripts/fresh-check
