{{/* The chart's name, and the release's full name (63 characters at most). */}}
{{- define "warren.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "warren.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "warren.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warren.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warren.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "warren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "warren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warren.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart creates for values given inline (webhook secret, forge token). */}}
{{- define "warren.secretName" -}}
{{- printf "%s-secrets" (include "warren.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "ADDR:PORT", bracketing an IPv6 ADDR. Argument: (list ADDR PORT). */}}
{{- define "warren.hostPort" -}}
{{- $addr := index . 0 -}}
{{- $port := index . 1 -}}
{{- if contains ":" $addr -}}
{{- printf "[%s]:%d" $addr (int $port) -}}
{{- else -}}
{{- printf "%s:%d" $addr (int $port) -}}
{{- end -}}
{{- end -}}

{{- define "warren.stateDir" -}}/var/lib/warren-controller{{- end -}}

{{- define "warren.webhookOn" -}}
{{- if or .Values.webhook.secret .Values.webhook.existingSecret -}}true{{- end -}}
{{- end -}}
