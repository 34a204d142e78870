{{- define "innoxide.name" -}}innoxide-operator{{- end -}}
{{- define "innoxide.labels" -}}
app.kubernetes.io/name: {{ include "innoxide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "innoxide.selector" -}}
app.kubernetes.io/name: {{ include "innoxide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
