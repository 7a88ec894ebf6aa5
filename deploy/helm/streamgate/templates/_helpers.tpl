{{/* Names and labels. */}}
{{- define "streamgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamgate.injector" -}}
{{- printf "%s-injector" (include "streamgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamgate.labels" -}}
app.kubernetes.io/name: streamgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streamgate.injectorSelector" -}}
app.kubernetes.io/name: streamgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end -}}

{{/* native or classic, from a mode value of auto|native|classic: auto is native
     from Kubernetes 1.29 (restartPolicy: Always on init containers). */}}
{{- define "streamgate.sidecarKind" -}}
{{- if eq .mode "auto" -}}
{{- if semverCompare ">=1.29.0-0" .root.Capabilities.KubeVersion.Version -}}native{{- else -}}classic{{- end -}}
{{- else -}}
{{- .mode -}}
{{- end -}}
{{- end -}}

{{/* The streamgate container, the same as
     deploy/kubernetes/components/sidecar/streamgate-sidecar.yaml's (make
     deploy-check compares them). Its proxy port is named sg-http: the injector
     renames it to the app port's name. */}}
{{- define "streamgate.container" -}}
name: streamgate
image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["-c", "/etc/streamgate/streamgate.yaml"]
ports:
  - name: sg-http
    containerPort: 3000
    protocol: TCP
  - name: sg-admin
    containerPort: 9901
    protocol: TCP
env:
  - name: APP_ADDRESS
    value: "127.0.0.1:8080"
  - name: STREAM_API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ .Values.stream.secretName }}
        key: api_key
# /healthz: the process serves. It does not depend on the app, so the startup
# probe of a native sidecar never waits for the app (started after it passed).
startupProbe:
  httpGet:
    path: /healthz
    port: sg-admin
  periodSeconds: 1
  failureThreshold: 30
  timeoutSeconds: 1
livenessProbe:
  httpGet:
    path: /healthz
    port: sg-admin
  periodSeconds: 10
  failureThreshold: 3
  timeoutSeconds: 2
readinessProbe:
  httpGet:
    path: /readyz
    port: sg-admin
  periodSeconds: 5
  failureThreshold: 2
  timeoutSeconds: 2
resources:
  {{- toYaml .Values.sidecar.resources | nindent 2 }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
# The image has no shell: the kubelet's sleep action, not exec.
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.sidecar.preStopSleepSeconds }}
volumeMounts:
  - name: streamgate-config
    mountPath: /etc/streamgate
    readOnly: true
  - name: streamgate-stream
    mountPath: /var/run/secrets/stream
    readOnly: true
  - name: streamgate-tmp
    mountPath: /tmp
{{- end -}}
