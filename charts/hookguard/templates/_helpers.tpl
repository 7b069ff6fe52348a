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

{{/* The labels that select the webhook's pods (Deployment, Service, PDB, NetworkPolicy). */}}
{{- define "hookguard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The controller's objects and pods. Its name label differs from the webhook's (not only a
component label), so the webhook's selectors, unchanged since before the split, never match a
controller pod: the webhook Service must not send admissions to a process without a webhook port.
*/}}
{{- define "hookguard.controllerName" -}}
{{- printf "%s-controller" (include "hookguard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hookguard.controllerSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hookguard.controllerLabels" -}}
{{ include "hookguard.controllerSelectorLabels" . }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hookguard.controllerServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookguard.controllerName" .) .Values.controller.serviceAccountName -}}
{{- else -}}
{{- default "default" .Values.controller.serviceAccountName -}}
{{- end -}}
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

{{/* The Secret holding the serving certificate: hookguard's own (selfManaged), cert-manager's, or yours. */}}
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
Feature switches, each true (non-empty) only when hookguard runs in the cluster and the feature is
on. The Deployment's flags and the RBAC rules are both derived from these, so a permission exists
exactly when the flag that needs it is passed.
*/}}
{{- define "hookguard.selfManaged" -}}
{{- if and (include "hookguard.inCluster" .) (eq .Values.certs.mode "selfManaged") }}true{{ end -}}
{{- end -}}

{{- define "hookguard.inventory" -}}
{{- if and (include "hookguard.inCluster" .) .Values.inventory.enabled }}true{{ end -}}
{{- end -}}

{{/* The hook run history (--history): part of the controller. */}}
{{- define "hookguard.history" -}}
{{- if and (include "hookguard.controller" .) .Values.history.enabled }}true{{ end -}}
{{- end -}}

{{- define "hookguard.orphanDetection" -}}
{{- if and (include "hookguard.inventory" .) .Values.inventory.orphanDetection }}true{{ end -}}
{{- end -}}

{{/* The janitor runs inside the inventory's loop (it deletes what the inventory saw). */}}
{{- define "hookguard.janitor" -}}
{{- if and (include "hookguard.inventory" .) .Values.janitor.enabled }}true{{ end -}}
{{- end -}}

{{/* "true" when a janitor namespace is a glob: RBAC cannot name namespaces by pattern, so its
deletes need a ClusterRole rule. A list of names gets one Role per namespace instead. */}}
{{- define "hookguard.janitorGlobs" -}}
{{- range .Values.janitor.namespaces }}{{ if or (contains "*" .) (contains "?" .) }}true{{ end }}{{ end -}}
{{- end -}}

{{/* The controller Deployment (`hookguard controller`) exists exactly when the inventory is on. */}}
{{- define "hookguard.controller" -}}
{{- include "hookguard.inventory" . -}}
{{- end -}}

{{/* The Lease is only contended for by the controller's replicas. */}}
{{- define "hookguard.leaderElection" -}}
{{- if and .Values.leaderElection.enabled (include "hookguard.controller" .) }}true{{ end -}}
{{- end -}}

{{/* Mutual TLS on the webhook port (webhook.clientCA), for the in-cluster Deployment. */}}
{{- define "hookguard.clientCA" -}}
{{- if and (include "hookguard.inCluster" .) .Values.webhook.clientCA.enabled }}true{{ end -}}
{{- end -}}

{{/* The policy selects namespaces by label (an override with a namespaceSelector): the webhook
then watches Namespaces (--namespace-labels). */}}
{{- define "hookguard.namespaceLabels" -}}
{{- if include "hookguard.inCluster" . }}
{{- range .Values.policy.overrides }}{{ if hasKey . "namespaceSelector" }}true{{ end }}{{ end -}}
{{- end }}
{{- end -}}

{{/* The webhook watches HookPolicyExceptions (--policy-exceptions). */}}
{{- define "hookguard.policyExceptions" -}}
{{- if and (include "hookguard.inCluster" .) .Values.policyExceptions.enabled }}true{{ end -}}
{{- end -}}

{{/* True when the webhook process talks to the Kubernetes API (and so needs a token). */}}
{{- define "hookguard.needsAPI" -}}
{{- include "hookguard.selfManaged" . -}}{{- include "hookguard.namespaceLabels" . -}}{{- include "hookguard.policyExceptions" . -}}
{{- end -}}

{{/*
Seconds in a duration written as values.schema.json allows it (integers with s, m, h, d or w,
e.g. 30d, 1h30m): used for the render checks and the alert thresholds.
*/}}
{{- define "hookguard.seconds" -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+[smhdw]" (toString .) -1 -}}
{{- $total = add $total (mul (regexFind "^[0-9]+" . | atoi) (get $units (regexFind "[smhdw]$" .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Days before expiry at which HookguardCertificateExpiringSoon fires. 0 means automatic: in
selfManaged mode half of servingRenewBefore, because hookguard renews the certificate itself when
servingRenewBefore is left and an alert above that would fire in every healthy renewal cycle;
14 days in the other modes.
*/}}
{{- define "hookguard.certExpiryDays" -}}
{{- $days := int .Values.metrics.prometheusRule.certExpiryDays -}}
{{- if and (eq $days 0) (include "hookguard.selfManaged" .) -}}
{{- $days = max 1 (div (include "hookguard.seconds" .Values.certs.selfManaged.servingRenewBefore | int) (mul 2 86400)) -}}
{{- else if eq $days 0 -}}
{{- $days = 14 -}}
{{- end -}}
{{- $days -}}
{{- end -}}

{{/*
The caBundle of both webhook configurations. Only the modes where the chart knows the CA render
one: out of cluster (webhook.url) and existingSecret, both from webhook.caBundle. With
certManager the cainjector fills it in; with selfManaged hookguard patches it in itself. A field
the chart never renders is left alone by `helm upgrade`: Helm 3's three-way merge only removes
fields that were in the previous release's manifest, and Helm 4's server-side apply only fields
its own field manager owned, so the value written by the cainjector or hookguard survives.
*/}}
{{- define "hookguard.caBundle" -}}
{{- if .Values.webhook.url -}}
{{- .Values.webhook.caBundle -}}
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
What every webhook shares; argument: (list $ (list "CREATE" "UPDATE")). The rules list the
operations. matchConditions (CEL, evaluated by the API server) send only objects that carry
helm.sh/hook (the object read is oldObject on DELETE, where object is null, and object otherwise)
and that are not being deleted: hookguard never denies or mutates an object that has a
deletionTimestamp, so the UPDATEs that finish a deletion (the garbage collector or a controller
removing its finalizer) never wait for hookguard, and a DELETE of an object that is already
terminating (the kubelet's final delete of a Pod) is not counted twice. resources "*" matches no
subresources. The release namespace and excludeNamespaces are never sent, so hookguard can never
block its own recovery.
*/}}
{{- define "hookguard.webhookCommon" -}}
{{- $root := index . 0 -}}
{{- $operations := index . 1 -}}
rules:
  - apiGroups: ["*"]
    apiVersions: ["*"]
    resources: ["*"]
    operations: {{ toJson $operations }}
    scope: "*"
matchConditions:
  - name: helm-hooks-only
    expression: >-
      (request.operation == 'DELETE' ? oldObject : object) != null &&
      has((request.operation == 'DELETE' ? oldObject : object).metadata.annotations) &&
      'helm.sh/hook' in (request.operation == 'DELETE' ? oldObject : object).metadata.annotations
  - name: not-being-deleted
    expression: >-
      (request.operation == 'DELETE' ? oldObject : object) == null ||
      !has((request.operation == 'DELETE' ? oldObject : object).metadata.deletionTimestamp)
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
{{- end -}}

{{/*
Checks that need a sentence, not a schema path (values.schema.json catches types, enums and
ranges first; these also hold with --skip-schema-validation).
*/}}
{{- define "hookguard.validate" -}}
{{- if and .Values.janitor.enabled (not .Values.inventory.enabled) (not .Values.webhook.url) -}}
{{- fail "janitor.enabled needs inventory.enabled: the janitor runs in the controller and deletes what the inventory saw" -}}
{{- end -}}
{{- if not .Values.webhook.url -}}
{{- if and (eq .Values.certs.mode "existingSecret") (not .Values.certs.existingSecret) -}}
{{- fail "certs.mode=existingSecret needs certs.existingSecret: the name of a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" -}}
{{- end -}}
{{- if and (eq .Values.certs.mode "existingSecret") (not .Values.webhook.caBundle) -}}
{{- fail "certs.mode=existingSecret needs webhook.caBundle: the base64-encoded PEM of the CA that signed the Secret's certificate" -}}
{{- end -}}
{{- end -}}
{{- if include "hookguard.selfManaged" . -}}
{{- $c := .Values.certs.selfManaged -}}
{{- $sv := include "hookguard.seconds" $c.servingValidity | int -}}
{{- $sr := include "hookguard.seconds" $c.servingRenewBefore | int -}}
{{- $cv := include "hookguard.seconds" $c.caValidity | int -}}
{{- $cr := include "hookguard.seconds" $c.caRenewBefore | int -}}
{{- if ge $sr $sv -}}
{{- fail (printf "certs.selfManaged.servingRenewBefore (%s) must be shorter than servingValidity (%s), or hookguard would renew the serving certificate at every check" $c.servingRenewBefore $c.servingValidity) -}}
{{- end -}}
{{- if ge $cr $cv -}}
{{- fail (printf "certs.selfManaged.caRenewBefore (%s) must be shorter than caValidity (%s), or hookguard would rotate the CA at every check" $c.caRenewBefore $c.caValidity) -}}
{{- end -}}
{{- $days := int .Values.metrics.prometheusRule.certExpiryDays -}}
{{- if and .Values.metrics.prometheusRule.enabled (gt $days 0) (ge (mul $days 86400) $sr) -}}
{{- fail (printf "metrics.prometheusRule.certExpiryDays (%d) must be below certs.selfManaged.servingRenewBefore (%s): hookguard renews the certificate at that point, so the alert would fire in every renewal cycle (0 picks half of it)" $days $c.servingRenewBefore) -}}
{{- end -}}
{{- end -}}
{{- if include "hookguard.clientCA" . -}}
{{- $ca := .Values.webhook.clientCA -}}
{{- $sources := 0 -}}
{{- range (list $ca.pem $ca.existingConfigMap $ca.existingSecret) }}{{ if . }}{{ $sources = add1 $sources }}{{ end }}{{ end -}}
{{- if ne (int $sources) 1 -}}
{{- fail (printf "webhook.clientCA.enabled needs exactly one of webhook.clientCA.pem (the CA's PEM), webhook.clientCA.existingConfigMap or webhook.clientCA.existingSecret (holding the PEM under webhook.clientCA.key); %d are set" (int $sources)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.janitor.enabled (not .Values.janitor.namespaces) -}}
{{- fail "janitor.enabled needs janitor.namespaces: the namespaces (names or globs) whose finished hooks the janitor may delete; nothing is deleted anywhere else" -}}
{{- end -}}
{{- if and .Values.janitor.enabled (not .Values.inventory.enabled) -}}
{{- fail "janitor.enabled needs inventory.enabled: the janitor deletes the finished and orphaned hooks the inventory finds" -}}
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
