{{/*
The STREAMTRAIN_* settings of each component as a dict (rendered into its ConfigMap). Nothing secret goes
here: credentials are files mounted from Secrets, and only their paths are settings.
extraEnv may add settings the chart does not manage; it may not override managed ones or carry a password.
*/}}
{{- define "streamtrain.componentEnv" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $c := .component -}}
{{- $cv := index $v $c -}}
{{- $env := fromYaml (include "streamtrain.commonEnv" (dict "ctx" $ctx "component" $c "port" $cv.httpPort)) -}}
{{- $models := printf "%s/models" $v.persistence.mountPath -}}
{{- $overKafka := include "streamtrain.versionsOverKafka" $ctx | eq "true" -}}
{{- if eq $c "producer" -}}
{{- $_ := set $env "STREAMTRAIN_SOURCE" $cv.source -}}
{{- $_ := set $env "STREAMTRAIN_COUNT" (toString (int64 $cv.count)) -}}
{{- $_ := set $env "STREAMTRAIN_RATE" (toString $cv.rate) -}}
{{- $_ := set $env "STREAMTRAIN_TEST_FRACTION" (toString $cv.testFraction) -}}
{{- $_ := set $env "STREAMTRAIN_SEED" (toString (int64 $cv.seed)) -}}
{{- $_ := set $env "STREAMTRAIN_COMPRESSION" $cv.compression -}}
{{- else if eq $c "trainer" -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_DIR" $models -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_NAME" $v.model.name -}}
{{- $_ := set $env "STREAMTRAIN_CHECKPOINT_DIR" (printf "%s/checkpoints" $v.persistence.mountPath) -}}
{{- $_ := set $env "STREAMTRAIN_GROUP_ID" $cv.groupId -}}
{{- $_ := set $env "STREAMTRAIN_MODEL" $cv.model -}}
{{- $_ := set $env "STREAMTRAIN_BATCH_SIZE" (ternary "auto" (toString (int64 $cv.batchSize)) (eq (toString $cv.batchSize) "auto")) -}}
{{- $_ := set $env "STREAMTRAIN_LEARNING_RATE" (toString $cv.learningRate) -}}
{{- $_ := set $env "STREAMTRAIN_SEED" (toString (int64 $cv.seed)) -}}
{{- $_ := set $env "STREAMTRAIN_START_OFFSET" $cv.startOffset -}}
{{- $_ := set $env "STREAMTRAIN_CHECKPOINT_EVERY_SECONDS" (toString $cv.checkpointEverySeconds) -}}
{{- $_ := set $env "STREAMTRAIN_KEEP_CHECKPOINTS" (toString (int64 $cv.keepCheckpoints)) -}}
{{- $_ := set $env "STREAMTRAIN_PUBLISH_EVERY_BATCHES" (toString (int64 $cv.publishEveryBatches)) -}}
{{- $_ := set $env "STREAMTRAIN_PUBLISH_EVERY_SECONDS" (toString $cv.publishEverySeconds) -}}
{{- $_ := set $env "STREAMTRAIN_KEEP_VERSIONS" (toString (int64 $cv.keepVersions)) -}}
{{- $_ := set $env "STREAMTRAIN_KEEP_PROMOTED_VERSIONS" (toString (int64 $cv.keepPromotedVersions)) -}}
{{- $_ := set $env "STREAMTRAIN_SHIP_VERSIONS" (toString $overKafka) -}}
{{- $_ := set $env "STREAMTRAIN_STOP_GRACE_SECONDS" (toString $cv.stopGraceSeconds) -}}
{{- else if eq $c "evaluator" -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_DIR" $models -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_NAME" $v.model.name -}}
{{- $_ := set $env "STREAMTRAIN_REPORT_DIR" "/var/lib/streamtrain/reports" -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_SOURCE" $v.model.source -}}
{{- $_ := set $env "STREAMTRAIN_GROUP_ID" $cv.groupId -}}
{{- $_ := set $env "STREAMTRAIN_BATCH_SIZE" (toString (int64 $cv.batchSize)) -}}
{{- $_ := set $env "STREAMTRAIN_WINDOW" (toString (int64 $cv.window)) -}}
{{- $_ := set $env "STREAMTRAIN_POLL_SECONDS" (toString $cv.pollSeconds) -}}
{{- $_ := set $env "STREAMTRAIN_SESSION_TIMEOUT_MS" (toString (int64 $cv.sessionTimeoutMs)) -}}
{{- $_ := set $env "STREAMTRAIN_GATE" (toString $cv.gate.enabled) -}}
{{- $_ := set $env "STREAMTRAIN_GATE_MIN_RECORDS" (toString (int64 $cv.gate.minRecords)) -}}
{{- $_ := set $env "STREAMTRAIN_GATE_METRIC" $cv.gate.metric -}}
{{- $_ := set $env "STREAMTRAIN_GATE_FLOOR" (toString $cv.gate.floor) -}}
{{- $_ := set $env "STREAMTRAIN_GATE_TOLERANCE" (toString $cv.gate.tolerance) -}}
{{- else if eq $c "predictor" -}}
{{- /* No STREAMTRAIN_TRANSACTIONAL_ID: each replica's default, streamtrain-predictor-<pod name>, is its own (and
what the KafkaUser's transactionalId prefix ACL admits). */ -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_DIR" $models -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_NAME" $v.model.name -}}
{{- $_ := set $env "STREAMTRAIN_GROUP_ID" $cv.groupId -}}
{{- $_ := set $env "STREAMTRAIN_SERVE" $cv.serve -}}
{{- $_ := set $env "STREAMTRAIN_MODEL_SOURCE" $v.model.source -}}
{{- $_ := set $env "STREAMTRAIN_OUTPUT_FORMAT" $cv.outputFormat -}}
{{- $_ := set $env "STREAMTRAIN_THRESHOLD" (toString $cv.threshold) -}}
{{- $_ := set $env "STREAMTRAIN_BATCH_SIZE" (toString (int64 $cv.batchSize)) -}}
{{- $_ := set $env "STREAMTRAIN_POLL_SECONDS" (toString $cv.pollSeconds) -}}
{{- $_ := set $env "STREAMTRAIN_SESSION_TIMEOUT_MS" (toString (int64 $cv.sessionTimeoutMs)) -}}
{{- $_ := set $env "STREAMTRAIN_TRANSACTION_TIMEOUT_MS" (toString (int64 $cv.transactionTimeoutMs)) -}}
{{- end -}}
{{- range $name, $value := $cv.extraEnv -}}
{{- if hasKey $env $name -}}
{{- fail (printf "%s.extraEnv.%s is set by the chart from its own value; set that value instead" $c $name) -}}
{{- end -}}
{{- if regexMatch "PASSWORD$" $name -}}
{{- fail (printf "%s.extraEnv.%s: secrets never go into a ConfigMap; the chart mounts Kafka credentials from Strimzi's Secrets" $c $name) -}}
{{- end -}}
{{- $_ := set $env $name (toString $value) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* Checksum of a component's settings: a changed value rolls the pods on `helm upgrade`. */}}
{{- define "streamtrain.envChecksum" -}}
{{- include "streamtrain.componentEnv" . | sha256sum -}}
{{- end -}}
