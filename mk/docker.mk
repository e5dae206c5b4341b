# Container images and the local container system, with plain `docker` (no compose, no registry).
# Included by the top-level Makefile (include mk/*.mk), which defines VENV, PY, PIP and `venv`.
#
#   make docker-engine  install docker.io (Debian) and start dockerd when `docker info` fails (root)
#   make base-image     offline base image: debootstrap bookworm + python3, `docker import`
#   make wheelhouse     .wheelhouse/: every runtime wheel, pinned by constraints.txt (pip wheel)
#   make wheelhouse-tfio  .wheelhouse-tfio/: the same plus the tfio extra, pinned by constraints-tfio.txt
#   make images         streamtrain:<tag> and streamtrain-broker:<tag>, <tag> = <version>-<git rev>;
#                       IMAGE_SOURCE=auto (default) builds FROM python:3.11-slim with the package
#                       index when that image can be had, else offline (base-image + wheelhouse)
#   make images-tfio    streamtrain:<tag>-tfio only: the app image with tensorflow-io (TensorFlow 2.16),
#                       for --ingest tensorflow-io; same as `make images IMAGE_VARIANT=tfio`
#   make local-up       broker, topics, trainer, evaluator, producer on one Docker network
#   make local-down     removes the stack's containers, network and volume
#   make local-logs     follows all of their logs
#   make docker-test    the container tests (tests/containers, marker docker)
#   make chart-containers  the chart's rendered pods (default and kind values) run as containers, end to end
#   make images-remove  removes this checkout's images (both variants), the untagged build stages and the
#                       wheelhouses: CI runs it once the suite is done, to free about 7 GB

VENV ?= .venv
PY ?= $(VENV)/bin/python
PIP ?= $(VENV)/bin/pip

IMAGE_REPO ?= streamtrain
BROKER_IMAGE_REPO ?= streamtrain-broker
STREAMTRAIN_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
GIT_REV ?= $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
IMAGE_TAG ?= $(STREAMTRAIN_VERSION)-$(GIT_REV)
# Fix the tag once per make run (a commit landing mid-run must not change it between targets).
IMAGE_TAG := $(IMAGE_TAG)

# auto | online | offline
IMAGE_SOURCE ?= auto
# "" (the default image, TensorFlow 2.21) | tfio (<tag>-tfio: tensorflow-io, TensorFlow 2.16); docker/variant.sh
IMAGE_VARIANT ?=
# The wheelhouse of the variant the offline path installs from.
WHEELHOUSE_TARGET := $(if $(IMAGE_VARIANT),wheelhouse-$(IMAGE_VARIANT),wheelhouse)
ONLINE_BASE_IMAGE ?= python:3.11-slim
OFFLINE_BASE_IMAGE ?= streamtrain-base:bookworm-py311
DEBIAN_MIRROR ?= http://deb.debian.org/debian
LOCAL_STACK ?= streamtrain-local

DOCKER_ENV = IMAGE_TAG='$(IMAGE_TAG)' APP_IMAGE='$(IMAGE_REPO)' BROKER_IMAGE='$(BROKER_IMAGE_REPO)'

.PHONY: docker-engine base-image wheelhouse wheelhouse-tfio images images-tfio images-online images-offline \
        images-remove local-up local-down local-logs local-status docker-test chart-containers

docker-engine: ## install docker.io and start dockerd when no engine answers (root; idempotent)
	@docker/engine.sh

base-image: docker-engine ## offline base image: debootstrap bookworm + python3, docker import
	DEBIAN_MIRROR='$(DEBIAN_MIRROR)' docker/base-image.sh '$(OFFLINE_BASE_IMAGE)'

wheelhouse: venv ## .wheelhouse/: all runtime wheels pinned by constraints.txt
	PIP='$(PIP)' docker/wheelhouse.sh .wheelhouse

wheelhouse-tfio: venv ## .wheelhouse-tfio/: runtime wheels + the tfio extra, pinned by constraints-tfio.txt
	IMAGE_VARIANT=tfio PIP='$(PIP)' docker/wheelhouse.sh .wheelhouse-tfio

images: docker-engine ## streamtrain:<tag> + streamtrain-broker:<tag> (online if python:3.11-slim can be had, else offline)
	@source='$(IMAGE_SOURCE)'; \
	if [ "$$source" = auto ]; then \
	  if docker image inspect '$(ONLINE_BASE_IMAGE)' >/dev/null 2>&1 \
	     || timeout 300 docker pull -q '$(ONLINE_BASE_IMAGE)' >/dev/null 2>&1; then source=online; \
	  else source=offline; echo "images: $(ONLINE_BASE_IMAGE) cannot be had: building offline"; fi; \
	fi; \
	$(MAKE) --no-print-directory "images-$$source" IMAGE_TAG='$(IMAGE_TAG)' IMAGE_VARIANT='$(IMAGE_VARIANT)'

images-tfio: ## streamtrain:<tag>-tfio: the app image with tensorflow-io (TensorFlow 2.16), online or offline like images
	@$(MAKE) --no-print-directory images IMAGE_TAG='$(IMAGE_TAG)' IMAGE_VARIANT=tfio

images-online: docker-engine ## images FROM python:3.11-slim with the package index
	$(DOCKER_ENV) IMAGE_VARIANT='$(IMAGE_VARIANT)' BASE_IMAGE='$(ONLINE_BASE_IMAGE)' WHEEL_SOURCE=index docker/images.sh

images-offline: base-image $(WHEELHOUSE_TARGET) ## images FROM the offline base, pip --no-index from the variant's wheelhouse
	$(DOCKER_ENV) IMAGE_VARIANT='$(IMAGE_VARIANT)' BASE_IMAGE='$(OFFLINE_BASE_IMAGE)' WHEEL_SOURCE=wheelhouse docker/images.sh

images-remove: ## remove this checkout's images, the untagged build stages (the classic builder's cache), the wheelhouses
	@if docker info >/dev/null 2>&1; then \
	  docker image rm -f '$(IMAGE_REPO):$(IMAGE_TAG)' '$(IMAGE_REPO):$(IMAGE_TAG)-tfio' \
	    '$(BROKER_IMAGE_REPO):$(IMAGE_TAG)' >/dev/null 2>&1 || true; \
	  docker image prune -f >/dev/null; \
	fi
	rm -rf .wheelhouse .wheelhouse-*
	@echo "images-remove: $$(mk/disk.sh)"

local-up: images ## broker, producer, trainer, evaluator as containers on one network
	$(DOCKER_ENV) STACK='$(LOCAL_STACK)' docker/local.sh up

local-down: ## remove the local containers, network and volume
	$(DOCKER_ENV) STACK='$(LOCAL_STACK)' docker/local.sh down

local-logs: ## follow the local containers' logs
	$(DOCKER_ENV) STACK='$(LOCAL_STACK)' docker/local.sh logs

local-status: ## the local containers and each component's /status
	$(DOCKER_ENV) STACK='$(LOCAL_STACK)' docker/local.sh status

docker-test: docker-engine venv ## container tests: offline build, end-to-end, trainer restart
	$(PY) -m pytest tests/containers -m docker

chart-containers: docker-engine venv ## the chart's pods (default and kind values) as containers, probes and counts (~3 min)
	$(PY) -m pytest tests/containers/test_chart_pods.py -m docker $(PYTEST_ARGS)
