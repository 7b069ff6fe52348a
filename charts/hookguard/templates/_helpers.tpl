{{- define "hookguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
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

{{/* The labels that select hookguard's pods (Deployment, Service, PDB, NetworkPolicy). */}}
{{- define "hookguard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* True (non-empty) when hookguard runs in the cluster, i.e. webhook.url is not set. */}}
{{- define "hookguard.inCluster" -}}
{{- if not .Values.webhook.url }}true{{ end -}}
{{- end -}}

{{- define "hookguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hookguard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret mounted into the pods. */}}
{{- define "hookguard.tlsSecretName" -}}
{{- if eq .Values.certs.mode "existingSecret" -}}
{{- .Values.certs.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "hookguard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The DNS names the API server uses to reach the Service (what the serving certificate covers). */}}
{{- define "hookguard.serviceDNSNames" -}}
{{- $svc := include "hookguard.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/*
certs.mode=selfManaged: the CA and serving certificate, generated with Helm's genCA/genSignedCert
ONCE per render and cached in .Values._hookguardCerts (base64 values of ca.crt, ca.key, tls.crt,
tls.key, plus notAfter), so the Secret and both webhook configurations see the same CA.
On upgrade the Secret of the previous release is looked up and reused; the serving certificate is
re-issued from the same CA when it expires within renewBeforeDays or no longer covers the Service's
DNS names. `helm template` and client-side dry runs cannot look up, so they generate a new CA.
*/}}
{{- define "hookguard.selfManagedCerts" -}}
{{- if not (hasKey .Values "_hookguardCerts") -}}
{{- $cfg := .Values.certs.selfManaged -}}
{{- $dns := include "hookguard.serviceDNSNames" . | fromJsonArray -}}
{{- $dnsJoined := join "," $dns -}}
{{- $svc := include "hookguard.fullname" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "hookguard.tlsSecretName" .) -}}
{{- $data := dict -}}
{{- $ca := dict -}}
{{- if and $existing $existing.data -}}
{{- if and (index $existing.data "ca.crt") (index $existing.data "ca.key") -}}
{{- $ca = buildCustomCert (index $existing.data "ca.crt") (index $existing.data "ca.key") -}}
{{- $_ := set $data "ca.crt" (index $existing.data "ca.crt") -}}
{{- $_ := set $data "ca.key" (index $existing.data "ca.key") -}}
{{- $annotations := default dict $existing.metadata.annotations -}}
{{- $notAfter := index $annotations "hookguard.io/serving-cert-not-after" | default "" -}}
{{- $coveredDNS := index $annotations "hookguard.io/serving-cert-dns-names" | default "" -}}
{{- $renewAt := now | dateModify (printf "+%dh" (mul 24 (int $cfg.renewBeforeDays))) | unixEpoch | atoi -}}
{{- $expiresAt := 0 -}}
{{- if $notAfter -}}
{{- $expiresAt = toDate "2006-01-02T15:04:05Z07:00" $notAfter | unixEpoch | atoi -}}
{{- end -}}
{{- if and (index $existing.data "tls.crt") (index $existing.data "tls.key") (gt $expiresAt $renewAt) (eq $coveredDNS $dnsJoined) -}}
{{- $_ := set $data "tls.crt" (index $existing.data "tls.crt") -}}
{{- $_ := set $data "tls.key" (index $existing.data "tls.key") -}}
{{- $_ := set $data "notAfter" $notAfter -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not (hasKey $data "ca.crt") -}}
{{- $ca = genCA (printf "%s-ca" $svc) (int $cfg.caValidityDays) -}}
{{- $_ := set $data "ca.crt" ($ca.Cert | b64enc) -}}
{{- $_ := set $data "ca.key" ($ca.Key | b64enc) -}}
{{- end -}}
{{- if not (hasKey $data "tls.crt") -}}
{{- $days := int $cfg.certValidityDays -}}
{{- $cert := genSignedCert (first $dns) nil $dns $days $ca -}}
{{- $_ := set $data "tls.crt" ($cert.Cert | b64enc) -}}
{{- $_ := set $data "tls.key" ($cert.Key | b64enc) -}}
{{- $_ := set $data "notAfter" (now | dateModify (printf "+%dh" (mul 24 $days)) | date "2006-01-02T15:04:05Z07:00") -}}
{{- end -}}
{{- $_ := set $data "dnsNames" $dnsJoined -}}
{{- $_ := set .Values "_hookguardCerts" $data -}}
{{- end -}}
{{- end -}}

{{/* The caBundle of both webhook configurations (empty with certManager: the cainjector sets it). */}}
{{- define "hookguard.caBundle" -}}
{{- if .Values.webhook.url -}}
{{- .Values.webhook.caBundle -}}
{{- else if eq .Values.certs.mode "selfManaged" -}}
{{- include "hookguard.selfManagedCerts" . -}}
{{- index .Values._hookguardCerts "ca.crt" -}}
{{- else if eq .Values.certs.mode "existingSecret" -}}
{{- .Values.webhook.caBundle -}}
{{- end -}}
{{- end -}}

{{/* Annotations of both webhook configurations. */}}
{{- define "hookguard.webhookAnnotations" -}}
{{- if and (not .Values.webhook.url) (eq .Values.certs.mode "certManager") -}}
cert-manager.io/inject-ca-from: {{ printf "%s/%s-serving" .Release.Namespace (include "hookguard.fullname" .) }}
{{- end -}}
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
{{- with include "hookguard.caBundle" $root }}
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

{{/*
Checks that need a sentence, not a schema path (values.schema.json catches types, enums and
ranges first; these also hold with --skip-schema-validation).
*/}}
{{- define "hookguard.validate" -}}
{{- if not .Values.webhook.url -}}
{{- if and (eq .Values.certs.mode "existingSecret") (not .Values.certs.existingSecret) -}}
{{- fail "certs.mode=existingSecret needs certs.existingSecret: the name of a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" -}}
{{- end -}}
{{- if and (eq .Values.certs.mode "existingSecret") (not .Values.webhook.caBundle) -}}
{{- fail "certs.mode=existingSecret needs webhook.caBundle: the base64-encoded PEM of the CA that signed the Secret's certificate" -}}
{{- end -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt (int .Values.replicas) 1) (not (kindIs "string" $pdb.minAvailable)) -}}
{{- if ge (int $pdb.minAvailable) (int .Values.replicas) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicas (%d), or no node could ever be drained" (int $pdb.minAvailable) (int .Values.replicas)) -}}
{{- end -}}
{{- end -}}
{{- $ttl := .Values.policy.jobTtl | default dict -}}
{{- if and $ttl.floorSeconds $ttl.defaultSeconds (gt (int $ttl.floorSeconds) (int $ttl.defaultSeconds)) -}}
{{- fail (printf "policy.jobTtl.floorSeconds (%d) must not exceed policy.jobTtl.defaultSeconds (%d)" (int $ttl.floorSeconds) (int $ttl.defaultSeconds)) -}}
{{- end -}}
{{- end -}}
