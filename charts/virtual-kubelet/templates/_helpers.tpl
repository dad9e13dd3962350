{{/* The release's full name: the release name, with the chart name when it does not contain it. */}}
{{- define "virtual-kubelet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "virtual-kubelet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "virtual-kubelet.labels" -}}
{{ include "virtual-kubelet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "virtual-kubelet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "virtual-kubelet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "virtual-kubelet.nodeName" -}}
{{- default .Release.Name .Values.nodeName -}}
{{- end -}}

{{/* The ConfigMap holding the provider configuration, empty when there is none. */}}
{{- define "virtual-kubelet.providerConfigMap" -}}
{{- if .Values.providerConfig.existingConfigMap -}}
{{- .Values.providerConfig.existingConfigMap -}}
{{- else if .Values.providerConfig.content -}}
{{- printf "%s-provider" (include "virtual-kubelet.fullname" .) -}}
{{- end -}}
{{- end -}}
