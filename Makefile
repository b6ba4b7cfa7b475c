# make aliases for the common invoke tasks; `invoke --list` has them all.
.PHONY: setup setup-test demo test test-unit test-integration lint plan check wheels image smoke bench

# The engines `make test` runs the integration tests on: oldest (the system engine;
# on a Debian host set up here, Debian 13's docker.io 26.1 with buildx 0.13), current
# (Debian unstable's buildx 0.29 as a CLI plugin and its dockerd 28.5, both unpacked
# under .cache/engines/current; the tests start that dockerd, with a data root of its
# own, when no engine answers, and run their private engines on it) or both.
# `make test WHEELFORGE_TEST_ENGINES=oldest` is quicker. WHEELFORGE_TEST_DOCKERD names
# another dockerd for the current pass. An engine that already answers (one you
# started) is used by both passes as it is.
WHEELFORGE_TEST_ENGINES ?= both
CURRENT_DOCKERD := $(CURDIR)/.cache/engines/current/root/usr/sbin/dockerd
WHEELFORGE_TEST_DOCKERD ?= $(CURRENT_DOCKERD)
ENGINES := $(if $(filter both,$(WHEELFORGE_TEST_ENGINES)),oldest current,$(WHEELFORGE_TEST_ENGINES))
CURRENT_DOCKER_CONFIG := $(CURDIR)/.cache/engines/current/docker-config
# shell text: the free disk where the tests write, printed around each pass
FREE_HERE = $$(df -h --output=avail . | tail -1 | tr -d ' ') free here

setup:            ## install engine, buildx, registry, skopeo, debootstrap, Python tools
	bash ci/setup-host.sh

demo: setup       ## the main job: demo wheels, runtime images and smoke
	invoke demo

setup-test:       ## setup, plus the current engine when the tests run on it
	bash ci/setup-host.sh $(if $(filter current,$(ENGINES)),--current-engine)

# While the unit tests and the first pass run, the demo's base image roots are bootstrapped
# in the background (the tests wait on the root's lock when they get there first).
test: setup-test lint  ## lint, unit tests, integration tests on each engine (starts engine and registry itself)
	@mkdir -p .cache; setsid python3 -m invoke base-images --roots-only >.cache/base-roots.log 2>&1 & \
	roots=$$!; trap 'kill -- -$$roots 2>/dev/null' EXIT; \
	python3 -m pytest -m "not gpu and not integration" && \
	  $(MAKE) --no-print-directory test-integration; rc=$$?; \
	wait $$roots || echo "== base roots in the background: $$(tail -1 .cache/base-roots.log)"; \
	exit $$rc

test-integration:  ## the integration tests, once per engine of WHEELFORGE_TEST_ENGINES
	@for e in $(ENGINES); do \
	  case $$e in \
	    oldest) config=$${DOCKER_CONFIG:-}; dockerd= ;; \
	    current) config=$(CURRENT_DOCKER_CONFIG); dockerd=$(WHEELFORGE_TEST_DOCKERD) ;; \
	    *) echo "WHEELFORGE_TEST_ENGINES: $$e is not oldest, current or both" >&2; exit 2 ;; \
	  esac; \
	  echo "== integration tests on the $$e engine: $$(DOCKER_CONFIG=$$config docker buildx version)$${dockerd:+; $$($$dockerd --version)}; $(FREE_HERE)"; \
	  once=$$([ $$e = $(lastword $(ENGINES)) ] || echo 1); \
	  DOCKER_CONFIG=$$config WHEELFORGE_TEST_DOCKERD=$$dockerd WHEELFORGE_TEST_ENGINE=$$e \
	    WHEELFORGE_TEST_ONE_ENGINE_DONE=$$once python3 -m pytest -m "integration and not gpu" --durations=15 \
	    || { echo "== the $$e pass failed; $(FREE_HERE)"; exit 1; }; \
	done

test-unit:        ## tests that need no engine
	python3 -m pytest -m "not gpu and not integration"

lint:
	ruff check .
	hadolint docker/Dockerfile.wheels docker/Dockerfile.clean

plan:             ## the production plan, stable channel
	invoke plan --channel stable

check:            ## recipes against upstream's own files (stable; ARGS="--git-rewrite M=O --skip C")
	invoke check --channel stable $(ARGS)

wheels:
	invoke wheels

image:
	invoke image

smoke:
	invoke smoke --host

bench: setup      ## build benchmarks on the demo set (results in bench/RESULTS.md)
	python3 bench/build_bench.py
