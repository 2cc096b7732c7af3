# Everything a newcomer needs: `make demo` (a real local ensemble) and `make test`.
# Programs the bed needs are built or fetched once and cached in ~/.cache/cluster-bootstrap.
VENV ?= .venv
PY := $(VENV)/bin/python
export CB_CACHE ?= $(HOME)/.cache/cluster-bootstrap

.PHONY: setup peers demo demo-hosts images test test-fast lint bench clean

setup: $(VENV)/.installed peers

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

peers:
	.ci/install-system
	.ci/install-consul >/dev/null
	.ci/install-jvm-peers >/dev/null

demo: setup  ## a dev Consul agent and 3 ZooKeeper members on 127.0.0.11-13, formed by the agent
	$(PY) -m testbed.demo

demo-hosts: setup  ## the same ensemble across two subnets in network namespaces (needs root)
	$(PY) -m testbed.demo_hosts

images: setup  ## the test images (Debian base, ZooKeeper service image, Dockerfile.glibc layer), podman
	$(PY) -m testbed.images

test: setup  ## every test, against real Consul, ZooKeeper and Kafka
	$(PY) -m pytest

test-fast: setup  ## unit tests only (fakes, no servers)
	$(PY) -m pytest tests/unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup  ## benchmark figures (see bench/README.md)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
