# molibackup: `make demo` runs the main job against a local EC2 emulator; `make test` runs
# every check. Both set up their own virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help dev demo test lint typecheck pytest docs clean lock docker-build \
	docker-release docker-base chart chart-package sbom test-cluster bench

help:
	@echo "make demo       run a backup job against a local EC2 emulator with a sample fleet"
	@echo "make test       lint, type-check and run the whole test suite"
	@echo "make dev        create $(VENV) with molibackup and its development tools"
	@echo "make bench      fleet-scale benchmark: speed, throttling, memory (a few minutes);"
	@echo "               writes docs/performance.md"
	@echo "make chart      regenerate the chart's values schema, docs and Chart.yaml"
	@echo "make chart-package  the chart archive (dist/molibackup-VERSION.tgz), with Helm's engine"
	@echo "make test-cluster   install the chart into \$$KUBECONFIG's cluster and run each job"
	@echo "make docker-build    build the container image (\$$IMAGE) for this platform"
	@echo "make docker-release  reproducible build: same sources, same image digest"
	@echo "                     (PLATFORMS=linux/amd64,linux/arm64 for a multi-arch manifest list)"
	@echo "make sbom       the image's SBOM (CycloneDX JSON) into dist/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

dev: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# schema/molibackup.schema.json is the one schema: the package's schema.json and the chart's
# files/molibackup.schema.json link to it, and the wheel and the chart archive get its bytes.
# The chart's values schema embeds it: regenerate that, the values table and Chart.yaml.
chart: $(STAMP)
	$(BIN)/python scripts/dashboard.py
	$(BIN)/python scripts/chart_schema.py
	$(BIN)/python scripts/chart_docs.py
	$(BIN)/python scripts/chart_release.py

# The chart archive, packaged by Helm's own engine, into dist/. With the digests of the pushed
# images, IMAGE_DIGESTS=linux/amd64=sha256:...,linux/arm64=sha256:..., its artifacthub.io
# images annotation names each platform's image by digest.
IMAGE_DIGESTS ?=
chart-package: $(STAMP) chart
	rm -rf build/chart && mkdir -p build dist && cp -rL chart build/chart
	$(BIN)/python scripts/chart_release.py build/chart/Chart.yaml "$(IMAGE_DIGESTS)"
	$(BIN)/python -c "import helm_python; print(helm_python.package('build/chart', destination='dist'))"

# Installs the chart into the cluster of $$KUBECONFIG (kind, EKS...) and runs each CronJob once.
test-cluster: $(STAMP)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG to a cluster (for example: kind create cluster)"; exit 1; }
	$(BIN)/pytest -m cluster tests/cluster

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# Fleet-scale benchmark against the emulator (a few minutes): speed, throttling, memory.
bench: $(STAMP)
	$(BIN)/python bench/benchmark.py --write docs/performance.md

docs: $(STAMP)
	$(BIN)/python scripts/config_reference.py --write docs/reference/configuration.md
	$(BIN)/python scripts/retention_example.py --write docs/how-to/backups.md
	$(BIN)/python scripts/metrics_reference.py --write docs/reference/metrics.md
	$(BIN)/python scripts/iam_reference.py --write docs/reference/iam.md

lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.13 --universal \
		--no-header -o requirements.lock
	$(BIN)/uv pip compile docker/build-requirements.in --generate-hashes --universal \
		--python-version 3.13 --no-header -o docker/build-requirements.lock

# --- container image ---------------------------------------------------------------------
# Works with podman or Docker: CONTAINER_ENGINE=docker to choose. BUILD_FLAGS passes extra
# flags to the build (such as --build-arg BUILD_IMAGE=... RUNTIME_IMAGE=... for local bases).

CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/molibackup/__init__.py)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE ?= localhost/molibackup:$(VERSION)
BUILD_FLAGS ?=
ENGINE_NAME = $(notdir $(CONTAINER_ENGINE))
IMAGE_ARGS = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION)

# The runtime base of each platform, pinned by digest (distroless python3-debian13).
RUNTIME_IMAGE_AMD64 ?= gcr.io/distroless/python3-debian13@sha256:931a490beb37db6a1d137ad11ed47ae4c0d4741ca5c2285818b49e9a8ee11c56
RUNTIME_IMAGE_ARM64 ?= gcr.io/distroless/python3-debian13@sha256:931a490beb37db6a1d137ad11ed47ae4c0d4741ca5c2285818b49e9a8ee11c56
PLATFORMS ?= linux/amd64
# The build stage runs on this machine's own platform (given explicitly: older engines do not
# set BUILDPLATFORM themselves).
BUILD_PLATFORM ?= linux/$(shell dpkg --print-architecture 2>/dev/null || echo amd64)

docker-build:
	@test -n "$(CONTAINER_ENGINE)" || { echo "no podman or docker found"; exit 1; }
	$(CONTAINER_ENGINE) build $(BUILD_FLAGS) $(IMAGE_ARGS) --build-arg TARGETARCH=amd64 \
		--build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE_AMD64) -t $(IMAGE) .

# Same commit, same bytes: timestamps clamped to the last commit's time, layers rewritten.
# One image per platform (IMAGE-ARCH), each built natively onto that platform's base, then
# one manifest list IMAGE over them: make docker-release PLATFORMS=linux/amd64,linux/arm64
docker-release:
	@test -n "$(CONTAINER_ENGINE)" || { echo "no podman or docker found"; exit 1; }
	@set -e; for platform in $$(echo "$(PLATFORMS)" | tr ',' ' '); do \
	  arch=$${platform#linux/}; \
	  case $$arch in amd64) base="$(RUNTIME_IMAGE_AMD64)" ;; arm64) base="$(RUNTIME_IMAGE_ARM64)" ;; \
	    *) echo "unsupported platform $$platform"; exit 1 ;; esac; \
	  if [ "$(ENGINE_NAME)" = docker ]; then \
	    SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) docker buildx build $(BUILD_FLAGS) $(IMAGE_ARGS) \
	      --platform $$platform --build-arg TARGETARCH=$$arch --build-arg RUNTIME_IMAGE=$$base \
	      --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
	      --output type=docker,name=$(IMAGE)-$$arch,rewrite-timestamp=true . ; \
	  else \
	    $(CONTAINER_ENGINE) build $(BUILD_FLAGS) $(IMAGE_ARGS) --platform $$platform \
	      --build-arg BUILDPLATFORM=$(BUILD_PLATFORM) \
	      --build-arg TARGETARCH=$$arch --build-arg RUNTIME_IMAGE=$$base \
	      --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) --timestamp $(SOURCE_DATE_EPOCH) \
	      -t $(IMAGE)-$$arch . ; \
	  fi; \
	  echo "$(IMAGE)-$$arch $$($(CONTAINER_ENGINE) image inspect --format '{{.Id}}' $(IMAGE)-$$arch)"; \
	done
	@set -e; archs=$$(echo "$(PLATFORMS)" | tr ',' ' ' | sed 's|linux/||g'); \
	if [ "$$(echo $$archs | wc -w)" = 1 ]; then \
	  $(CONTAINER_ENGINE) tag $(IMAGE)-$$archs $(IMAGE); \
	elif [ "$(ENGINE_NAME)" = docker ]; then \
	  docker manifest rm $(IMAGE) >/dev/null 2>&1 || true; \
	  docker manifest create $(IMAGE) $$(for a in $$archs; do echo $(IMAGE)-$$a; done); \
	else \
	  $(CONTAINER_ENGINE) manifest rm $(IMAGE) >/dev/null 2>&1 || true; \
	  $(CONTAINER_ENGINE) manifest create $(IMAGE) >/dev/null; \
	  for a in $$archs; do \
	    $(CONTAINER_ENGINE) manifest add --arch $$a $(IMAGE) containers-storage:$(IMAGE)-$$a >/dev/null; \
	  done; \
	  echo "$(IMAGE): manifest list of $$archs"; \
	fi

# The image's SBOM (CycloneDX JSON, shipped in it at /usr/share/doc/molibackup/sbom.cdx.json),
# copied out of a freshly built image into dist/.
sbom: docker-build
	@mkdir -p dist
	@container=$$($(CONTAINER_ENGINE) create $(IMAGE)); \
	$(CONTAINER_ENGINE) cp $$container:/usr/share/doc/molibackup/sbom.cdx.json \
	  dist/molibackup-$(VERSION).cdx.json; \
	$(CONTAINER_ENGINE) rm $$container >/dev/null
	@echo dist/molibackup-$(VERSION).cdx.json

# A local Debian 13 base for machines that cannot pull public images (see docker/local-base.sh).
docker-base:
	docker/local-base.sh
