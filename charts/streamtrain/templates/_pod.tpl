{{/*
Pod template of a component. Call with (dict "ctx" $ "component" "trainer" "command" (list "train")
"restartPolicy" "Always"); volumes and mounts specific to the trainer, evaluator and predictor are added here.
*/}}
{{- define "streamtrain.podTemplate" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $c := .component -}}
{{- $cv := index $v $c -}}
{{- /* With model.source kafka evaluators and predictors keep their own copy of the store in an emptyDir: they
mount no volume of the trainer's and may run on any node. */ -}}
{{- $ownCopy := and (has $c (list "evaluator" "predictor")) (include "streamtrain.versionsOverKafka" $ctx | eq "true") -}}
metadata:
  labels:
    {{- include "streamtrain.labels" (dict "ctx" $ctx "component" $c) | nindent 4 }}
  annotations:
    checksum/config: {{ include "streamtrain.envChecksum" (dict "ctx" $ctx "component" $c) }}
    {{- with $cv.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "streamtrain.componentName" (dict "ctx" $ctx "component" $c) }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  restartPolicy: {{ .restartPolicy }}
  {{- if eq $c "trainer" }}
  terminationGracePeriodSeconds: {{ int $cv.terminationGracePeriodSeconds }}
  {{- end }}
  securityContext:
    {{- include "streamtrain.podSecurityContext" $ctx | nindent 4 }}
  {{- with $v.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $cv.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $cv.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $affinity := deepCopy $cv.affinity -}}
  {{- if and (eq $c "evaluator") $v.persistence.colocateEvaluators (not $ownCopy) }}
  {{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (fromYaml (include "streamtrain.selectorLabels" (dict "ctx" $ctx "component" "trainer")))) }}
  {{- $podAffinity := get $affinity "podAffinity" | default dict }}
  {{- $required := get $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" | default list }}
  {{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append $required $term) }}
  {{- $_ := set $affinity "podAffinity" $podAffinity }}
  {{- end }}
  {{- with $affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ $c }}
      image: {{ include "streamtrain.image" $ctx | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        - streamtrain
        - {{ .command }}
      envFrom:
        - configMapRef:
            name: {{ include "streamtrain.componentName" (dict "ctx" $ctx "component" $c) }}
      env:
        {{- include "streamtrain.runtimeEnv" $ctx | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ int $cv.httpPort }}
          protocol: TCP
      {{- include "streamtrain.probes" (dict "ctx" $ctx) | nindent 6 }}
      resources:
        {{- toYaml $cv.resources | nindent 8 }}
      securityContext:
        {{- include "streamtrain.containerSecurityContext" $ctx | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- include "streamtrain.kafkaVolumeMounts" (dict "ctx" $ctx) | trim | nindent 8 }}
        {{- if eq $c "trainer" }}
        - name: models
          mountPath: {{ $v.persistence.mountPath }}
        {{- else if has $c (list "evaluator" "predictor") }}
        - name: models
          mountPath: {{ $v.persistence.mountPath }}
          {{- if not $ownCopy }}
          readOnly: true
          {{- end }}
        {{- end }}
        {{- if eq $c "evaluator" }}
        - name: reports
          mountPath: /var/lib/streamtrain/reports
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.tmpSizeLimit }}
    {{- include "streamtrain.kafkaVolumes" (dict "ctx" $ctx "component" $c) | trim | nindent 4 }}
    {{- if $ownCopy }}
    - name: models
      emptyDir:
        sizeLimit: {{ $v.model.localSizeLimit }}
    {{- else if has $c (list "trainer" "evaluator" "predictor") }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "streamtrain.modelClaim" $ctx }}
        {{- if has $c (list "evaluator" "predictor") }}
        readOnly: true
        {{- end }}
    {{- end }}
    {{- if eq $c "evaluator" }}
    - name: reports
      emptyDir:
        sizeLimit: {{ $cv.reportsSizeLimit }}
    {{- end }}
{{- end -}}

{{/* Name of the shared model PVC. */}}
{{- define "streamtrain.modelClaim" -}}
{{- default (printf "%s-models" (include "streamtrain.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}
