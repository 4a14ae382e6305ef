{{/* The chart's name. */}}
{{- define "molibackup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; CronJob names are built on it. */}}
{{- define "molibackup.fullname" -}}
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

{{- define "molibackup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "molibackup.labels" -}}
helm.sh/chart: {{ include "molibackup.chart" . }}
{{ include "molibackup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "molibackup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "molibackup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "molibackup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "molibackup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The verify CronJobs' ServiceAccount: their own when given, else the backups'. */}}
{{- define "molibackup.verifyServiceAccountName" -}}
{{- if .Values.verifyServiceAccount.name }}
{{- .Values.verifyServiceAccount.name }}
{{- else if .Values.verifyServiceAccount.annotations }}
{{- printf "%s-verify" (include "molibackup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "molibackup.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "molibackup.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The CronJob's name: <release>-<job>. The controller appends 11 characters for each Job, and
a Job name may have 63, so this one may have 52: a longer one fails the render instead of
being cut into a possible collision.
*/}}
{{- define "molibackup.cronJobName" -}}
{{- $name := printf "%s-%s" (include "molibackup.fullname" .root) .job }}
{{- if gt (len $name) 52 }}
{{- fail (printf "the CronJob name %q is %d characters long; Kubernetes allows 52. Shorten the job name %q or the release name (or set fullnameOverride)." $name (len $name) .job) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* The config file: `settings` as its global section, every job's `config`. */}}
{{- define "molibackup.configFile" -}}
{{- $jobs := dict }}
{{- range $name, $job := .Values.jobs }}
{{- $_ := set $jobs $name $job.config }}
{{- end }}
{{- $global := deepCopy (.Values.settings | default dict) }}
{{- with .Values.monitoring.pushgateway }}
{{- $metrics := deepCopy (get $global "metrics" | default dict) }}
{{- $_ := set $metrics "pushgateway" (get $metrics "pushgateway" | default .) }}
{{- $_ := set $global "metrics" $metrics }}
{{- end }}
{{- with .Values.monitoring.pingUrl }}
{{- $_ := set $global "ping_url" (get $global "ping_url" | default .) }}
{{- end }}
{{- dict "global" $global "jobs" $jobs | toYaml }}
{{- end }}

{{/* Seconds in a duration such as 90m, 26h or 2d (the values schema allows only these). */}}
{{- define "molibackup.seconds" -}}
{{- $number := regexFind "^[0-9]+" . | atoi }}
{{- $unit := trimPrefix (toString $number) . }}
{{- mul $number (get (dict "m" 60 "h" 3600 "d" 86400) $unit) }}
{{- end }}

{{/* Refuse combinations the schema cannot express clearly, or when it was skipped. */}}
{{- define "molibackup.validate" -}}
{{- if and .Values.credentials.existingSecret (hasKey .Values.serviceAccount.annotations "eks.amazonaws.com/role-arn") }}
{{- fail "credentials.existingSecret and the IRSA annotation eks.amazonaws.com/role-arn are both set: static keys would silently win over the role in the AWS credential chain. Choose one." }}
{{- end }}
{{- range $name, $job := .Values.jobs }}
{{- if or (hasKey $job.config "accesskey_id") (hasKey $job.config "accesskey_secret") }}
{{- fail (printf "jobs.%s.config holds AWS keys: they would be stored in a ConfigMap in plain text. Put them in a Secret and set credentials.existingSecret instead." $name) }}
{{- end }}
{{- end }}
{{- end }}
