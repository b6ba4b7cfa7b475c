# make aliases for the common invoke tasks; `invoke --list` has them all.
.PHONY: setup demo test test-unit lint plan wheels image smoke bench

setup:            ## install engine, buildx, registry, debootstrap, Python tools
	bash ci/setup-host.sh

demo: setup       ## the main job: demo wheels, runtime images and smoke
	invoke demo

test: setup lint  ## lint, then every test that needs no GPU (starts engine and registry itself)
	python3 -m pytest -m "not gpu"

test-unit:        ## tests that need no engine
	python3 -m pytest -m "not gpu and not integration"

lint:
	ruff check .
	hadolint docker/Dockerfile.wheels docker/Dockerfile.clean

plan:             ## the production plan, stable channel
	invoke plan --channel stable

wheels:
	invoke wheels

image:
	invoke image

smoke:
	invoke smoke --host

bench: setup      ## build benchmarks on the demo set (results in bench/RESULTS.md)
	python3 bench/build_bench.py
