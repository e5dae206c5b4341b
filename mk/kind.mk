# Kubernetes on kind: cluster, Strimzi operator, the streamtrain chart and the cluster-level tests.
# Included by the top-level Makefile (include mk/*.mk), which defines VENV, PY and `venv`; `images` (mk/docker.mk)
# builds the application image. Needs docker, kind, kubectl and helm on PATH, and a network.
#
#   make kind-up     kind cluster + Strimzi operator (pinned chart version), waits for the operator
#   make deploy      images, kind load, helm upgrade --install, waits for Kafka, topics, users and pods
#   make e2e         cluster-level tests (tests/e2e) against KUBE_CONTEXT
#   make undeploy    deletes KafkaTopics (not their topics)/KafkaUsers first (finalizers: entity operator), then the release
#   make kind-down   deletes the kind cluster
#   make chart-lint  static chart tests (render, helm lint, schemas, policies); no cluster needed

PY ?= .venv/bin/python
KIND ?= kind
KUBECTL ?= kubectl
HELM ?= helm

KIND_CLUSTER ?= streamtrain
# kind supports a node image only with the kind release that built it, and a tag alone may name a build for
# another release: the image is pinned by the digest that kind v0.30.0's release notes list for Kubernetes 1.34.0,
# the version the chart is validated against (tests/chart: KUBE_VERSION). kind-tools requires that kind or newer.
KIND_MIN_VERSION ?= 0.30.0
KIND_NODE_IMAGE ?= kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a
KIND_CONFIG ?= k8s/kind-config.yaml
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)

STRIMZI_VERSION ?= 1.2.0
STRIMZI_CHART ?= oci://quay.io/strimzi-helm/strimzi-kafka-operator
STRIMZI_NAMESPACE ?= strimzi
STRIMZI_VALUES ?= k8s/strimzi-values.yaml

NAMESPACE ?= streamtrain
RELEASE ?= streamtrain
CHART ?= charts/streamtrain
CHART_VALUES ?= k8s/streamtrain-kind-values.yaml
KAFKA_CLUSTER ?= $(RELEASE)-kafka
DEPLOY_TIMEOUT ?= 900s
# Pod Security Standard enforced on NAMESPACE (pod-security.kubernetes.io/enforce); empty = not labelled.
POD_SECURITY ?= restricted
# The last e2e test uninstalls the release (1); set 0 to keep it running afterwards.
E2E_UNINSTALL ?= 1

# The image `make images` builds: <package version>-<git revision>.
IMAGE_REPO ?= streamtrain
STREAMTRAIN_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
GIT_REV ?= $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
IMAGE_TAG ?= $(STREAMTRAIN_VERSION)-$(GIT_REV)

KCTL = $(KUBECTL) --context '$(KUBE_CONTEXT)'

.PHONY: kind-up deploy undeploy kind-down e2e chart-lint kind-tools

kind-tools: ## check that kind (>= KIND_MIN_VERSION), kubectl, helm and docker are on PATH
	@for tool in '$(KIND)' '$(KUBECTL)' '$(HELM)' docker; do \
	  command -v "$$tool" >/dev/null 2>&1 || { echo "missing tool: $$tool (see docs/kubernetes.md)" >&2; exit 1; }; \
	done
	@found=$$('$(KIND)' version | sed -n 's/^kind v\([0-9][0-9.]*\).*/\1/p'); \
	if [ -z "$$found" ] || [ "$$(printf '%s\n' '$(KIND_MIN_VERSION)' "$$found" | sort -V | head -n 1)" != '$(KIND_MIN_VERSION)' ]; then \
	  echo "kind $${found:-of unknown version} is older than $(KIND_MIN_VERSION), whose node image KIND_NODE_IMAGE is" >&2; exit 1; \
	fi

kind-up: kind-tools ## kind cluster (k8s/kind-config.yaml) + the pinned Strimzi operator; waits for it
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo 'kind cluster $(KIND_CLUSTER) exists'; \
	else \
	  $(KIND) create cluster --name '$(KIND_CLUSTER)' --config '$(KIND_CONFIG)' --image '$(KIND_NODE_IMAGE)' --wait 180s; \
	fi
	$(KCTL) create namespace '$(STRIMZI_NAMESPACE)' --dry-run=client -o yaml | $(KCTL) apply -f -
	$(KCTL) create namespace '$(NAMESPACE)' --dry-run=client -o yaml | $(KCTL) apply -f -
	$(if $(POD_SECURITY),$(KCTL) label namespace '$(NAMESPACE)' --overwrite \
	  'pod-security.kubernetes.io/enforce=$(POD_SECURITY)' 'pod-security.kubernetes.io/warn=$(POD_SECURITY)')
	$(HELM) upgrade --install strimzi '$(STRIMZI_CHART)' --version '$(STRIMZI_VERSION)' \
	  --kube-context '$(KUBE_CONTEXT)' --namespace '$(STRIMZI_NAMESPACE)' \
	  --values '$(STRIMZI_VALUES)' --set 'watchNamespaces={$(NAMESPACE)}' --wait --timeout 10m
	$(KCTL) --namespace '$(STRIMZI_NAMESPACE)' rollout status deployment/strimzi-cluster-operator --timeout=300s

# The image goes in as an archive: `kind load docker-image` fails on Docker's containerd image store (kind #3795).
deploy: images kind-tools ## images, kind load, helm upgrade --install; waits for Kafka, topics, users, pods
	archive=$$(mktemp --suffix=.tar) && trap 'rm -f "$$archive"' EXIT && \
	  docker save --output "$$archive" '$(IMAGE_REPO):$(IMAGE_TAG)' && \
	  $(KIND) load image-archive "$$archive" --name '$(KIND_CLUSTER)'
	$(HELM) upgrade --install '$(RELEASE)' '$(CHART)' --kube-context '$(KUBE_CONTEXT)' --namespace '$(NAMESPACE)' \
	  --values '$(CHART_VALUES)' --set-string 'image.repository=$(IMAGE_REPO)' --set-string 'image.tag=$(IMAGE_TAG)' \
	  --set-string 'fullnameOverride=$(RELEASE)' --set-string 'kafka.clusterName=$(KAFKA_CLUSTER)'
	$(KCTL) --namespace '$(NAMESPACE)' wait 'kafka/$(KAFKA_CLUSTER)' --for=condition=Ready --timeout='$(DEPLOY_TIMEOUT)'
	$(KCTL) --namespace '$(NAMESPACE)' wait kafkatopics,kafkausers -l 'app.kubernetes.io/instance=$(RELEASE)' --for=condition=Ready --timeout=300s
	$(KCTL) --namespace '$(NAMESPACE)' rollout status 'statefulset/$(RELEASE)-trainer' --timeout='$(DEPLOY_TIMEOUT)'
	$(KCTL) --namespace '$(NAMESPACE)' rollout status 'deployment/$(RELEASE)-evaluator' --timeout='$(DEPLOY_TIMEOUT)'
	$(KCTL) --namespace '$(NAMESPACE)' wait pods -l 'app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/component in (trainer,evaluator)' \
	  --for=condition=Ready --timeout=300s
	$(KCTL) --namespace '$(NAMESPACE)' get pods -l 'app.kubernetes.io/part-of=streamtrain'

# KafkaTopics and KafkaUsers carry finalizers that only the entity operator removes: delete them while it still
# runs, before `helm uninstall` deletes the Kafka cluster (and with it the entity operator). The Topic Operator
# deletes the Kafka topic of a deleted KafkaTopic unless it is marked strimzi.io/managed=false: marked, the topics
# share the fate of Kafka's storage (kept with persistent-claim and deleteClaim false, beside the kept model volume
# whose checkpoint points into them; gone with the cluster otherwise).
undeploy: kind-tools ## delete KafkaTopics (leaving the topics to Kafka's storage)/KafkaUsers, then helm uninstall
	$(KCTL) --namespace '$(NAMESPACE)' annotate kafkatopics -l 'app.kubernetes.io/instance=$(RELEASE)' \
	  --overwrite strimzi.io/managed=false
	$(KCTL) --namespace '$(NAMESPACE)' delete kafkatopics,kafkausers -l 'app.kubernetes.io/instance=$(RELEASE)' \
	  --ignore-not-found --wait --timeout=300s
	$(HELM) uninstall '$(RELEASE)' --kube-context '$(KUBE_CONTEXT)' --namespace '$(NAMESPACE)' --ignore-not-found --wait --timeout 10m
	@echo "The model volume outlives the release only beside kept Kafka data (docs/kubernetes.md): $(KUBECTL) --context $(KUBE_CONTEXT) -n $(NAMESPACE) get pvc"

kind-down: kind-tools ## delete the kind cluster
	$(KIND) delete cluster --name '$(KIND_CLUSTER)'

e2e: venv ## cluster-level tests (tests/e2e, marker e2e) against KUBE_CONTEXT
	STREAMTRAIN_KUBE_CONTEXT='$(KUBE_CONTEXT)' STREAMTRAIN_NAMESPACE='$(NAMESPACE)' STREAMTRAIN_RELEASE='$(RELEASE)' \
	  STREAMTRAIN_CHART='$(CHART)' STREAMTRAIN_E2E_UNINSTALL='$(E2E_UNINSTALL)' \
	  '$(PY)' -m pytest tests/e2e -m e2e -v -p no:cacheprovider

chart-lint: venv ## static chart tests: render, helm lint, schemas, policies, make -n, shellcheck
	'$(PY)' -m pytest tests/chart -q
