{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "orchestrator.fullname" -}}
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

{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces nothing may change, whatever the values say: the system ones and the release's own (the
     worker's rails refuse them at run time as well). A list naming one fails the render. */}}
{{- define "orchestrator.refuseProtected" -}}
{{- $root := index . 0 }}
{{- $protected := list "kube-system" "kube-public" "kube-node-lease" $root.Release.Namespace }}
{{- range $ns := index . 2 }}
{{- if has $ns $protected }}
{{- fail (printf "%s: namespace %s is protected (kube-system, kube-public, kube-node-lease and the release namespace %s): the orchestrator never changes anything there" (index $ 1) $ns $root.Release.Namespace) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The namespaces the worker may act on: the values list; none when it is empty (the release namespace is
     protected, so it is never a default). */}}
{{- define "orchestrator.targetNamespaces" -}}
{{- $namespaces := .Values.targetNamespaces | default list }}
{{- include "orchestrator.refuseProtected" (list . "targetNamespaces" $namespaces) }}
{{- toJson $namespaces }}
{{- end }}

{{/* Chaos may only target namespaces the RBAC covers: chaos.namespaces, else the target namespaces,
     else (cluster-wide RBAC, no list) any unprotected namespace. */}}
{{- define "orchestrator.chaosNamespaces" -}}
{{- include "orchestrator.refuseProtected" (list . "chaos.namespaces" (.Values.chaos.namespaces | default list)) }}
{{- if .Values.chaos.namespaces }}
{{- join "," .Values.chaos.namespaces }}
{{- else if and .Values.rbac.clusterWide (not .Values.targetNamespaces) }}
{{- "*" }}
{{- else }}
{{- include "orchestrator.targetNamespaces" . | fromJsonArray | join "," }}
{{- end }}
{{- end }}

{{/*
The worker's variable holding an Unleash provider's Admin API token: ORCHESTRATOR_UNLEASH_TOKEN_<NAME>.
*/}}
{{- define "orchestrator.unleashTokenEnv" -}}
ORCHESTRATOR_UNLEASH_TOKEN_{{ . | upper | replace "-" "_" }}
{{- end }}
