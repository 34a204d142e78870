{{/*
Names, labels and the RBAC rules every template shares. Every object's name
derives from innoxide.fullname, so two releases never collide, not even on
the cluster-scoped ClusterRoles and bindings.
*/}}
{{- define "innoxide.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-innoxide-operator, or the release name when it already says so. */}}
{{- define "innoxide.fullname" -}}
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

{{- define "innoxide.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "innoxide.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "innoxide.caSecret" -}}
{{- default (printf "%s-ca" (include "innoxide.fullname" .)) .Values.caSecret -}}
{{- end -}}

{{- define "innoxide.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "innoxide.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "innoxide.selector" -}}
app.kubernetes.io/name: {{ include "innoxide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
What the operator does in a namespace it watches, and nothing more:
- its three kinds: reads and watches them, writes status and finalizers; a
  schedule creates its backups and deletes the ones retention drops;
- pods: finds the pod that runs a backup and its agent's address; an
  InPlace restore deletes the pod once its datadir swap is armed (the
  StatefulSet recreates it and the init container swaps the data in); a pod
  waiting at the scheduling gate innoxide.dev/agent is let go (patch) once
  it carries the agent, or deleted if it was made before the wiring;
- StatefulSets labelled innoxide.dev/agent=enabled get the agent sidecar
  (server-side apply = patch);
- Secrets: reads the storage keys, encryption keys and MySQL passwords a
  backup or restore names (names the user chooses, so no resourceNames);
  creates and applies the agents' certificate Secrets and a NewStatefulSet
  restore's spec Secret. No list or watch: it never reads a Secret it was
  not told about;
- Events about its objects.
*/}}
{{- define "innoxide.workloadRules" -}}
- apiGroups: [innoxide.dev]
  resources: [mysqlbackups, mysqlrestores, mysqlbackupschedules]
  verbs: [get, list, watch, create, delete, patch, update]
- apiGroups: [innoxide.dev]
  resources: [mysqlbackups/status, mysqlrestores/status, mysqlbackupschedules/status]
  verbs: [get, patch, update]
- apiGroups: [innoxide.dev]
  resources: [mysqlbackups/finalizers, mysqlrestores/finalizers, mysqlbackupschedules/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, delete, patch]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* The namespaces the operator watches, as its --watch-namespaces flag takes them. */}}
{{- define "innoxide.watchNamespaces" -}}
{{- join "," (uniq .Values.watchNamespaces) -}}
{{- end -}}
