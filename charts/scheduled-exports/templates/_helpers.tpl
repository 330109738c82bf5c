{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "scheduled-exports.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of the release's objects. */}}
{{- define "scheduled-exports.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scheduled-exports.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels of every object of the release. */}}
{{- define "scheduled-exports.labels" -}}
helm.sh/chart: {{ include "scheduled-exports.chart" . }}
{{ include "scheduled-exports.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scheduled-exports
{{- end }}

{{- define "scheduled-exports.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scheduled-exports.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's Pods. */}}
{{- define "scheduled-exports.controllerSelectorLabels" -}}
{{ include "scheduled-exports.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "scheduled-exports.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scheduled-exports.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest, or repository:tag (tag defaults to the appVersion). */}}
{{- define "scheduled-exports.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (.tag | default .appVersion) }}
{{- end }}
{{- end }}

{{- define "scheduled-exports.image" -}}
{{- $i := .Values.image }}
{{- include "scheduled-exports.imageRef" (dict "repository" $i.repository "tag" $i.tag "digest" $i.digest "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* The export Jobs' image: the operator's own unless exportImage sets something. */}}
{{- define "scheduled-exports.exportImage" -}}
{{- $e := .Values.exportImage }}
{{- if or $e.repository $e.tag $e.digest }}
{{- include "scheduled-exports.imageRef" (dict "repository" ($e.repository | default .Values.image.repository) "tag" $e.tag "digest" $e.digest "appVersion" .Chart.AppVersion) }}
{{- else }}
{{- include "scheduled-exports.image" . }}
{{- end }}
{{- end }}

{{/* "file" or "s3", from artifactStore.url. There is no default store: each would break some
clusters (a ReadWriteOnce volume on more than one node, a bucket that does not exist). */}}
{{- define "scheduled-exports.artifactScheme" -}}
{{- $url := required "artifactStore.url is required: s3://bucket/prefix (any S3-compatible store, credentials in artifactStore.credentials) or file:///path on a ReadWriteMany claim (artifactStore.persistence)" .Values.artifactStore.url }}
{{- if hasPrefix "file:///" $url }}file
{{- else if hasPrefix "s3://" $url }}s3
{{- else }}
{{- fail (printf "artifactStore.url %q: use file:///absolute/path or s3://bucket/prefix" $url) }}
{{- end }}
{{- end }}

{{/* The local path of a file:// store. */}}
{{- define "scheduled-exports.artifactPath" -}}
{{- trimPrefix "file://" .Values.artifactStore.url }}
{{- end }}

{{/* The claim mounted at a file:// store's path; empty when none. The operator's replicas and
every export Job mount it wherever they are scheduled, so a claim the chart creates must be
ReadWriteMany. */}}
{{- define "scheduled-exports.artifactClaim" -}}
{{- $persistence := .Values.artifactStore.persistence }}
{{- if and (eq (include "scheduled-exports.artifactScheme" .) "file") $persistence.enabled }}
{{- if and (not $persistence.existingClaim) (not (has "ReadWriteMany" $persistence.accessModes)) }}
{{- fail (printf "artifactStore.persistence.accessModes %v: the file:// store's claim is mounted by the operator's replicas and by every export Job, which may run on different nodes; it must be ReadWriteMany (or use an s3:// artifactStore.url, or an existingClaim on a one-node cluster)" $persistence.accessModes) }}
{{- end }}
{{- $persistence.existingClaim | default (printf "%s-artifacts" (include "scheduled-exports.fullname" .)) }}
{{- end }}
{{- end }}

{{/* The Secret with the artifact store's credentials; empty when none. */}}
{{- define "scheduled-exports.artifactSecret" -}}
{{- $credentials := .Values.artifactStore.credentials }}
{{- if $credentials.create }}
{{- $credentials.secretName | default (printf "%s-artifact-store" (include "scheduled-exports.fullname" .)) }}
{{- else }}
{{- $credentials.secretName }}
{{- end }}
{{- end }}

{{- /* Egress both Pods need: DNS, the API server and object store ports, the SFTP server. */}}
{{- define "scheduled-exports.commonEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    {{- range .Values.networkPolicy.egressPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
    - port: {{ .Values.sftp.port }}
      protocol: TCP
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}
