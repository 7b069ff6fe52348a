{{- define "hookguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hookguard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* clientConfig for one endpoint; argument: (list $ "/mutate") */}}
{{- define "hookguard.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- if $root.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) $path | quote }}
{{- else }}
service:
  name: {{ include "hookguard.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ $path | quote }}
  port: {{ $root.Values.service.port }}
{{- end }}
{{- with $root.Values.webhook.caBundle }}
caBundle: {{ . }}
{{- end }}
{{- end -}}

{{/*
What both webhooks share. matchConditions (CEL, evaluated by the API server) send only objects that
carry helm.sh/hook, and DELETEs of such objects (object is null on DELETE, oldObject on CREATE).
resources "*" matches no subresources. The release namespace and excludeNamespaces are never sent,
so hookguard can never block its own recovery.
*/}}
{{- define "hookguard.webhookCommon" -}}
{{- $root := . -}}
rules:
  - apiGroups: ["*"]
    apiVersions: ["*"]
    resources: ["*"]
    operations: ["CREATE", "UPDATE", "DELETE"]
    scope: "*"
matchConditions:
  - name: helm-hooks-only
    expression: >-
      (request.operation == 'DELETE' ? oldObject : object) != null &&
      has((request.operation == 'DELETE' ? oldObject : object).metadata.annotations) &&
      'helm.sh/hook' in (request.operation == 'DELETE' ? oldObject : object).metadata.annotations
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (append $root.Values.webhook.excludeNamespaces $root.Release.Namespace) | uniq }}
        - {{ . | quote }}
        {{- end }}
sideEffects: None
admissionReviewVersions: ["v1"]
timeoutSeconds: {{ $root.Values.webhook.timeoutSeconds }}
{{- end -}}
