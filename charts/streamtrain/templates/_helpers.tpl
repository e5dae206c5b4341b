{{/* Chart name, truncated for label values. */}}
{{- define "streamtrain.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "streamtrain.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* helm.sh/chart label value. */}}
{{- define "streamtrain.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The image tag: image.tag, or the chart's appVersion (the version label; without the variant). */}}
{{- define "streamtrain.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* The image of every component: <repository>:<tag>, or <repository>:<tag>-<variant> (image.variant: tfio). */}}
{{- define "streamtrain.image" -}}
{{- $variant := .Values.image.variant | default "" -}}
{{- printf "%s:%s%s" .Values.image.repository (include "streamtrain.imageTag" .) (ternary (printf "-%s" $variant) "" (ne $variant "")) -}}
{{- end -}}

{{/*
Labels of every resource. Call with (dict "ctx" $ "component" "trainer"); component may be empty.
*/}}
{{- define "streamtrain.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "streamtrain.chart" $ctx }}
app.kubernetes.io/name: {{ include "streamtrain.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
app.kubernetes.io/part-of: streamtrain
app.kubernetes.io/version: {{ include "streamtrain.imageTag" $ctx | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: stable across upgrades. Call with (dict "ctx" $ "component" "x"). */}}
{{- define "streamtrain.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamtrain.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Name of the Kafka custom resource. */}}
{{- define "streamtrain.kafkaCluster" -}}
{{- default (printf "%s-kafka" .Release.Name) .Values.kafka.clusterName | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's KafkaUser (and of the Secret the User Operator creates for it). */}}
{{- define "streamtrain.kafkaUser" -}}
{{- printf "%s-%s" (include "streamtrain.fullname" .ctx) .component -}}
{{- end -}}

{{/* Whether a component is deployed: trainer and evaluator always, producer and predictor when enabled.
Call with (dict "ctx" $ "component" "x"); "true" or empty. */}}
{{- define "streamtrain.componentEnabled" -}}
{{- if or (has .component (list "trainer" "evaluator")) (index .ctx.Values .component).enabled -}}true{{- end -}}
{{- end -}}

{{/* Name of a component's ServiceAccount, Deployment, Service, ConfigMap, NetworkPolicy. */}}
{{- define "streamtrain.componentName" -}}
{{- printf "%s-%s" (include "streamtrain.fullname" .ctx) .component -}}
{{- end -}}

{{/* The transactional.id prefix of every predictor replica: the code's default transactional.id is
streamtrain-predictor-<host name> (the pod name), unique per replica; the predictor's KafkaUser may use exactly
the ids with this prefix. */}}
{{- define "streamtrain.transactionalIdPrefix" -}}streamtrain-predictor-{{- end -}}

{{/* Bootstrap address of the in-cluster listener. */}}
{{- define "streamtrain.bootstrap" -}}
{{- printf "%s-kafka-bootstrap.%s.svc:%d" (include "streamtrain.kafkaCluster" .) .Release.Namespace (int .Values.kafka.listener.port) -}}
{{- end -}}

{{/* Kafka security protocol the components use, from the listener settings. */}}
{{- define "streamtrain.securityProtocol" -}}
{{- $l := .Values.kafka.listener -}}
{{- if $l.tls -}}
{{- if eq $l.authentication "scram-sha-512" -}}SASL_SSL{{- else -}}SSL{{- end -}}
{{- else -}}
{{- if eq $l.authentication "scram-sha-512" -}}SASL_PLAINTEXT{{- else -}}PLAINTEXT{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether Kafka authenticates clients (and so KafkaUsers and ACLs exist). */}}
{{- define "streamtrain.kafkaAuth" -}}
{{- if ne .Values.kafka.listener.authentication "none" -}}true{{- end -}}
{{- end -}}

{{/* Whether evaluators and predictors receive the model versions over Kafka (model.source: kafka) instead of
mounting the model volume; "true" or empty. */}}
{{- define "streamtrain.versionsOverKafka" -}}
{{- if eq .Values.model.source "kafka" -}}true{{- end -}}
{{- end -}}

{{/* Where secrets are mounted in the containers. */}}
{{- define "streamtrain.caDir" -}}/var/run/secrets/streamtrain/kafka-ca{{- end -}}
{{- define "streamtrain.userDir" -}}/var/run/secrets/streamtrain/kafka-user{{- end -}}

{{/* Checks of value combinations the schema cannot express well; they fail the render with a clear message. */}}
{{- define "streamtrain.validate" -}}
{{- $l := .Values.kafka.listener -}}
{{- if and (not $l.tls) (eq $l.authentication "tls") -}}
{{- fail "kafka.listener.authentication=tls (mutual TLS) needs kafka.listener.tls=true" -}}
{{- end -}}
{{- if le (float64 .Values.trainer.terminationGracePeriodSeconds) (float64 .Values.trainer.stopGraceSeconds) -}}
{{- fail (printf "trainer.terminationGracePeriodSeconds (%v) must exceed trainer.stopGraceSeconds (%v): the trainer needs the grace period to checkpoint" .Values.trainer.terminationGracePeriodSeconds .Values.trainer.stopGraceSeconds) -}}
{{- end -}}
{{- if and (eq (float64 .Values.trainer.publishEverySeconds) 0.0) (eq (int .Values.trainer.publishEveryBatches) 0) -}}
{{- fail "set trainer.publishEverySeconds or trainer.publishEveryBatches: with both 0 no model version is ever published" -}}
{{- end -}}
{{- if gt (int .Values.topics.replicas) (int .Values.kafka.replicas) -}}
{{- fail (printf "topics.replicas (%v) cannot exceed kafka.replicas (%v)" .Values.topics.replicas .Values.kafka.replicas) -}}
{{- end -}}
{{- if gt (int .Values.topics.minInsyncReplicas) (int .Values.topics.replicas) -}}
{{- fail (printf "topics.minInsyncReplicas (%v) cannot exceed topics.replicas (%v)" .Values.topics.minInsyncReplicas .Values.topics.replicas) -}}
{{- end -}}
{{- if .Values.producer.enabled -}}
{{- if and (eq .Values.producer.kind "Job") (eq (int .Values.producer.count) 0) -}}
{{- fail "producer.kind=Job needs producer.count > 0 (a bounded stream); use producer.kind=Deployment for an endless one" -}}
{{- end -}}
{{- if and (eq .Values.producer.kind "Deployment") (ne (int .Values.producer.count) 0) -}}
{{- fail "producer.kind=Deployment runs an endless stream: set producer.count=0 (a Deployment restarts a finished producer forever)" -}}
{{- end -}}
{{- if and (eq .Values.producer.kind "Deployment") (not (has .Values.producer.source (list "susy" "drift"))) -}}
{{- fail "producer.kind=Deployment needs an endless generator source: producer.source=susy or drift" -}}
{{- end -}}
{{- end -}}
{{- $hpa := .Values.predictor.autoscaling -}}
{{- if and .Values.predictor.enabled $hpa.enabled (gt (int $hpa.minReplicas) (int $hpa.maxReplicas)) -}}
{{- fail (printf "predictor.autoscaling.minReplicas (%v) cannot exceed predictor.autoscaling.maxReplicas (%v)" $hpa.minReplicas $hpa.maxReplicas) -}}
{{- end -}}
{{- if and .Values.kafka.rack.enabled (lt (int .Values.kafka.replicas) 2) -}}
{{- fail "kafka.rack.enabled needs kafka.replicas >= 2" -}}
{{- end -}}
{{- /* tensorflow-io is only in the tfio variant of the image (the default image has TensorFlow 2.21 without it). */ -}}
{{- range $c := list "trainer" "evaluator" -}}
{{- $ingest := index ((index $.Values $c).extraEnv | default dict) "STREAMTRAIN_INGEST" | default "" | toString -}}
{{- if and (eq (lower $ingest) "tensorflow-io") (ne ($.Values.image.variant | default "") "tfio") -}}
{{- fail (printf "%s.extraEnv.STREAMTRAIN_INGEST=tensorflow-io needs image.variant=tfio: the image %s has no tensorflow-io (build <tag>-tfio with `make images-tfio`)" $c (include "streamtrain.image" $)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security context ("restricted" Pod Security Standard). */}}
{{- define "streamtrain.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.security.runAsUser }}
runAsGroup: {{ .Values.security.runAsGroup }}
fsGroup: {{ .Values.security.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context. */}}
{{- define "streamtrain.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.security.runAsUser }}
runAsGroup: {{ .Values.security.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Environment of every component that is not a secret, as a map (rendered into the component's ConfigMap).
Call with (dict "ctx" $ "component" "producer" "port" 9101).
*/}}
{{- define "streamtrain.commonEnv" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
STREAMTRAIN_BOOTSTRAP_SERVERS: {{ include "streamtrain.bootstrap" $ctx | quote }}
STREAMTRAIN_SECURITY_PROTOCOL: {{ include "streamtrain.securityProtocol" $ctx | quote }}
{{- if $v.kafka.listener.tls }}
STREAMTRAIN_SSL_CA_LOCATION: {{ printf "%s/ca.crt" (include "streamtrain.caDir" $ctx) | quote }}
{{- end }}
{{- if eq $v.kafka.listener.authentication "scram-sha-512" }}
STREAMTRAIN_SASL_MECHANISM: "SCRAM-SHA-512"
STREAMTRAIN_SASL_USERNAME: {{ include "streamtrain.kafkaUser" . | quote }}
STREAMTRAIN_SASL_PASSWORD_FILE: {{ printf "%s/password" (include "streamtrain.userDir" $ctx) | quote }}
{{- else if eq $v.kafka.listener.authentication "tls" }}
STREAMTRAIN_SSL_CERTIFICATE_LOCATION: {{ printf "%s/user.crt" (include "streamtrain.userDir" $ctx) | quote }}
STREAMTRAIN_SSL_KEY_LOCATION: {{ printf "%s/user.key" (include "streamtrain.userDir" $ctx) | quote }}
{{- end }}
STREAMTRAIN_CLIENT_ID: {{ include "streamtrain.componentName" . | quote }}
STREAMTRAIN_TRAIN_TOPIC: {{ $v.topics.train.name | quote }}
STREAMTRAIN_TEST_TOPIC: {{ $v.topics.test.name | quote }}
STREAMTRAIN_METRICS_TOPIC: {{ $v.topics.metrics.name | quote }}
STREAMTRAIN_MODEL_EVENTS_TOPIC: {{ $v.topics.modelEvents.name | quote }}
STREAMTRAIN_DEAD_LETTER_TOPIC: {{ $v.topics.deadLetter.name | quote }}
STREAMTRAIN_CONTROL_TOPIC: {{ $v.topics.control.name | quote }}
STREAMTRAIN_MODEL_FILES_TOPIC: {{ $v.topics.modelFiles.name | quote }}
STREAMTRAIN_INPUT_TOPIC: {{ $v.topics.input.name | quote }}
STREAMTRAIN_OUTPUT_TOPIC: {{ $v.topics.predictions.name | quote }}
STREAMTRAIN_LOG_LEVEL: {{ $v.logging.level | quote }}
STREAMTRAIN_LOG_FORMAT: {{ $v.logging.format | quote }}
STREAMTRAIN_HTTP_HOST: "0.0.0.0"
STREAMTRAIN_HTTP_PORT: {{ .port | quote }}
{{- end -}}

{{/* Environment for libraries that want a writable home (the root filesystem is read-only). */}}
{{- define "streamtrain.runtimeEnv" -}}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: KERAS_HOME
  value: /tmp/keras
{{- end -}}

{{/* Volumes with the Kafka cluster CA and the component's KafkaUser credentials. (dict "ctx" $ "component" "x") */}}
{{- define "streamtrain.kafkaVolumes" -}}
{{- $ctx := .ctx -}}
{{- if $ctx.Values.kafka.listener.tls }}
- name: kafka-ca
  secret:
    secretName: {{ printf "%s-cluster-ca-cert" (include "streamtrain.kafkaCluster" $ctx) }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if eq $ctx.Values.kafka.listener.authentication "scram-sha-512" }}
- name: kafka-user
  secret:
    secretName: {{ include "streamtrain.kafkaUser" . }}
    defaultMode: 0440
    items:
      - key: password
        path: password
{{- else if eq $ctx.Values.kafka.listener.authentication "tls" }}
- name: kafka-user
  secret:
    secretName: {{ include "streamtrain.kafkaUser" . }}
    defaultMode: 0440
    items:
      - key: user.crt
        path: user.crt
      - key: user.key
        path: user.key
{{- end }}
{{- end -}}

{{- define "streamtrain.kafkaVolumeMounts" -}}
{{- $ctx := .ctx -}}
{{- if $ctx.Values.kafka.listener.tls }}
- name: kafka-ca
  mountPath: {{ include "streamtrain.caDir" $ctx }}
  readOnly: true
{{- end }}
{{- if ne $ctx.Values.kafka.listener.authentication "none" }}
- name: kafka-user
  mountPath: {{ include "streamtrain.userDir" $ctx }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* "true" when the model PVC outlives `helm uninstall` (persistence.keepOnUninstall; null: exactly when Kafka's
data does). Its checkpoint holds Kafka offsets, so the render fails when asked to keep it beside Kafka data that
goes with the release: the reinstalled trainer would find the topics empty and stop with offset loss. */}}
{{- define "streamtrain.keepModelStore" -}}
{{- $s := .Values.kafka.storage -}}
{{- $kafkaKept := and (eq $s.type "persistent-claim") (not $s.deleteClaim) -}}
{{- $keep := .Values.persistence.keepOnUninstall -}}
{{- if kindIs "invalid" $keep }}{{ $keep = $kafkaKept }}{{ end -}}
{{- if and $keep (not $kafkaKept) -}}
{{- fail (printf "persistence.keepOnUninstall=true keeps the model volume, whose checkpoint holds Kafka offsets, while Kafka's data does not outlive helm uninstall (kafka.storage.type=%s, deleteClaim=%v): after a reinstall the topics start empty and the trainer stops with offset loss. Leave keepOnUninstall unset (it follows Kafka's storage), or use kafka.storage.type=persistent-claim with deleteClaim=false" $s.type (default false $s.deleteClaim)) -}}
{{- end -}}
{{- if $keep }}true{{ end -}}
{{- end -}}

{{/* HTTP probes on the component's port. (dict "ctx" $ "port" 9101) */}}
{{- define "streamtrain.probes" -}}
{{- $p := .ctx.Values.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
  timeoutSeconds: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: {{ $p.liveness.periodSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
  timeoutSeconds: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  timeoutSeconds: 3
{{- end -}}
