# One-stop entry points.  Each target installs what it needs on a fresh Debian/Ubuntu
# machine (apt packages when missing, then the venv), so nothing is done by hand.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := skopeo docker-registry redis-server umoci openssl
CONFIG ?=

.PHONY: install run test bench lint apt

$(BIN)/ocistore: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/ocistore

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/ocistore serve $(CONFIG)

test: apt install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/mypy
	$(BIN)/pytest

bench: apt install
	$(BIN)/python bench/bench.py

lint: install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/mypy
