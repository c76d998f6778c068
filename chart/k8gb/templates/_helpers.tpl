{{/* Names and labels. */}}
{{- define "k8gb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "k8gb.fullname" -}}
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

{{- define "k8gb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "k8gb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "k8gb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "k8gb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: k8gb
{{- end -}}

{{- define "k8gb.serviceAccountName" -}}
{{- if .Values.k8gb.deployRbac -}}
{{ include "k8gb.fullname" . }}
{{- else -}}
{{ default "default" .Values.k8gb.serviceAccountName }}
{{- end -}}
{{- end -}}

{{- define "k8gb.image" -}}
{{- if .Values.k8gb.imageDigest -}}
{{ .Values.k8gb.imageRepo }}@{{ .Values.k8gb.imageDigest }}
{{- else -}}
{{ .Values.k8gb.imageRepo }}:{{ .Values.k8gb.imageTag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The port of metricsAddress ("0.0.0.0:8080" -> 8080). */}}
{{- define "k8gb.metricsPort" -}}
{{- regexFind "[0-9]+$" .Values.k8gb.metricsAddress -}}
{{- end -}}

{{/* DNS_ZONES: "parent:zone:negTTL;..." */}}
{{- define "k8gb.dnsZones" -}}
{{- $entries := list -}}
{{- range .Values.k8gb.dnsZones -}}
{{- $ttl := 30 -}}
{{- if hasKey . "dnsZoneNegTTL" }}{{ $ttl = .dnsZoneNegTTL }}{{ end -}}
{{- $entries = append $entries (printf "%s:%s:%d" .parentZone .loadBalancedZone (int64 $ttl)) -}}
{{- end -}}
{{- join ";" $entries -}}
{{- end -}}

{{/* EXT_GSLB_CLUSTERS_GEO_TAGS from a comma-separated string or a list. */}}
{{- define "k8gb.extGeoTags" -}}
{{- $tags := .Values.k8gb.extGslbClustersGeoTags -}}
{{- if kindIs "slice" $tags -}}
{{- join "," $tags -}}
{{- else -}}
{{- regexReplaceAll "\\s+" (toString $tags) "" -}}
{{- end -}}
{{- end -}}

{{/* Mount paths of the Secrets. */}}
{{- define "k8gb.paths" -}}
dot: /etc/k8gb/dot
dotClientCa: /etc/k8gb/dot-client-ca
peerCa: /etc/k8gb/peer-ca
peerClient: /etc/k8gb/peer-client
peerTsig: /etc/k8gb/peer-tsig
rfc2136Tsig: /etc/k8gb/rfc2136-tsig
{{- end -}}

{{/*
Checks that span several values (the schema checks each value): one line
naming the values, as the binary's own errors do.
*/}}
{{- define "k8gb.validate" -}}
{{- $k := .Values.k8gb -}}
{{- if and .Values.extdns.enabled $k.delegation.rfc2136.enabled -}}
{{- fail "extdns.enabled and k8gb.delegation.rfc2136.enabled exclude each other: choose one way to delegate" -}}
{{- end -}}
{{- if and $k.delegation.rfc2136.enabled (not $k.edgeDNSServers) -}}
{{- fail "k8gb.delegation.rfc2136.enabled needs k8gb.edgeDNSServers: the first one receives the updates" -}}
{{- end -}}
{{- if and (eq $k.peerExchange.transport "dot") (not $k.dot.enabled) -}}
{{- fail "k8gb.peerExchange.transport=dot needs k8gb.dot.enabled: peers query this cluster over DoT too" -}}
{{- end -}}
{{- if and $k.dot.clientCaSecretName (not $k.dot.enabled) -}}
{{- fail "k8gb.dot.clientCaSecretName needs k8gb.dot.enabled" -}}
{{- end -}}
{{- if and $k.dot.enabled (eq (int $k.dot.port) (int $k.dnsPort)) -}}
{{- fail "k8gb.dot.port and k8gb.dnsPort must differ" -}}
{{- end -}}
{{- $metrics := include "k8gb.metricsPort" . | int -}}
{{- if or (eq $metrics (int $k.dnsPort)) (and $k.dot.enabled (eq $metrics (int $k.dot.port))) -}}
{{- fail "the port of k8gb.metricsAddress must differ from k8gb.dnsPort and k8gb.dot.port" -}}
{{- end -}}
{{- if and (not $k.deployRbac) (not $k.serviceAccountName) -}}
{{- fail "k8gb.deployRbac=false needs k8gb.serviceAccountName: an existing ServiceAccount bound to k8gb's ClusterRole" -}}
{{- end -}}
{{- if and $k.geoip.database (not (hasPrefix "/" $k.geoip.database)) -}}
{{- fail "k8gb.geoip.database must be an absolute path inside a k8gb.extraVolumeMounts entry" -}}
{{- end -}}
{{- $volumes := list -}}
{{- range $k.extraVolumes }}{{ $volumes = append $volumes .name }}{{ end -}}
{{- range $k.extraVolumeMounts -}}
{{- if not (has .name $volumes) -}}
{{- fail (printf "k8gb.extraVolumeMounts: %q is not a k8gb.extraVolumes entry" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The container's environment: every setting the binary reads. */}}
{{- define "k8gb.env" -}}
{{- $k := .Values.k8gb -}}
{{- $p := include "k8gb.paths" . | fromYaml -}}
- name: CLUSTER_GEO_TAG
  value: {{ $k.clusterGeoTag | quote }}
- name: EXT_GSLB_CLUSTERS_GEO_TAGS
  value: {{ include "k8gb.extGeoTags" . | quote }}
- name: DNS_ZONES
  value: {{ include "k8gb.dnsZones" . | quote }}
- name: EDGE_DNS_SERVERS
  value: {{ join "," $k.edgeDNSServers | quote }}
- name: CLUSTER_EXPOSED_IPS
  value: {{ join "," $k.clusterExposedIPs | quote }}
- name: GLUEA_PREFIX
  value: {{ $k.glueAPrefix | quote }}
- name: RECONCILE_REQUEUE_SECONDS
  value: {{ $k.reconcileRequeueSeconds | int64 | quote }}
- name: ZONE_DELEGATION_RECONCILE_REQUEUE_SECONDS
  value: {{ $k.zoneDelegationReconcileRequeueSeconds | int64 | quote }}
- name: ZONE_DELEGATION_RECOVERY_SECONDS
  value: {{ $k.zoneDelegationRecoverySeconds | int64 | quote }}
- name: NS_RECORD_TTL
  value: {{ $k.nsRecordTTL | int64 | quote }}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: COREDNS_SERVICE_TYPE
  value: {{ $k.service.type | quote }}
- name: EXTDNS_ENABLED
  value: {{ .Values.extdns.enabled | toString | quote }}
- name: METRICS_ADDRESS
  value: {{ $k.metricsAddress | quote }}
- name: LOG_LEVEL
  value: {{ $k.log.level | quote }}
- name: LOG_FORMAT
  value: {{ $k.log.format | quote }}
- name: NO_COLOR
  value: "true"
- name: DNS_ADDRESS
  value: {{ printf "0.0.0.0:%d" (int $k.dnsPort) | quote }}
{{- if $k.dot.enabled }}
- name: DOT_ADDRESS
  value: {{ printf "0.0.0.0:%d" (int $k.dot.port) | quote }}
- name: DOT_CERT_FILE
  value: {{ printf "%s/tls.crt" $p.dot | quote }}
- name: DOT_KEY_FILE
  value: {{ printf "%s/tls.key" $p.dot | quote }}
{{- if $k.dot.clientCaSecretName }}
- name: DOT_CLIENT_CA_FILE
  value: {{ printf "%s/ca.crt" $p.dotClientCa | quote }}
{{- end }}
{{- end }}
- name: PEER_TRANSPORT
  value: {{ $k.peerExchange.transport | quote }}
- name: PEER_DNS_PORT
  value: {{ $k.peerExchange.port | int64 | quote }}
- name: PEER_DOT_PORT
  value: {{ $k.peerExchange.dotPort | int64 | quote }}
- name: PEER_HEARTBEAT_SECONDS
  value: {{ $k.peerExchange.heartbeatSeconds | toString | quote }}
- name: PEER_GRACE_ATTEMPTS
  value: {{ $k.peerExchange.graceAttempts | int64 | quote }}
- name: PEER_TIMEOUT_SECONDS
  value: {{ $k.peerExchange.timeoutSeconds | toString | quote }}
- name: NOTIFY_ENABLED
  value: {{ $k.peerExchange.notify | toString | quote }}
{{- if $k.peerExchange.tls.caSecretName }}
- name: PEER_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $p.peerCa | quote }}
{{- end }}
{{- if $k.peerExchange.tls.clientCertSecretName }}
- name: PEER_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $p.peerClient | quote }}
- name: PEER_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $p.peerClient | quote }}
{{- end }}
{{- if $k.peerExchange.tsig.keyName }}
- name: TSIG_KEY_NAME
  value: {{ $k.peerExchange.tsig.keyName | quote }}
- name: TSIG_ALGORITHM
  value: {{ $k.peerExchange.tsig.algorithm | quote }}
- name: TSIG_SECRET_FILE
  value: {{ printf "%s/%s" $p.peerTsig $k.peerExchange.tsig.secretKey | quote }}
{{- end }}
{{- if $k.delegation.rfc2136.enabled }}
- name: RFC2136_TSIG_KEY_NAME
  value: {{ $k.delegation.rfc2136.keyName | quote }}
- name: RFC2136_TSIG_ALGORITHM
  value: {{ $k.delegation.rfc2136.algorithm | quote }}
- name: RFC2136_TSIG_SECRET_FILE
  value: {{ printf "%s/%s" $p.rfc2136Tsig $k.delegation.rfc2136.secretKey | quote }}
- name: DELEGATION_FINALIZE
  value: {{ $k.delegation.finalize | toString | quote }}
{{- end }}
{{- if $k.geoip.database }}
- name: GEOIP_DATABASE
  value: {{ $k.geoip.database | quote }}
{{- end }}
- name: GEOIP_FIELDS
  value: {{ join "," $k.geoip.fields | quote }}
- name: SHUTDOWN_GRACE_SECONDS
  value: {{ $k.shutdownGraceSeconds | int64 | quote }}
{{- end -}}

{{/* Volume mounts of the k8gb container (Secrets and extra volumes, all read-only). */}}
{{- define "k8gb.volumeMounts" -}}
{{- $k := .Values.k8gb -}}
{{- $p := include "k8gb.paths" . | fromYaml -}}
{{- if $k.dot.enabled }}
- name: dot-cert
  mountPath: {{ $p.dot }}
  readOnly: true
{{- if $k.dot.clientCaSecretName }}
- name: dot-client-ca
  mountPath: {{ $p.dotClientCa }}
  readOnly: true
{{- end }}
{{- end }}
{{- if $k.peerExchange.tls.caSecretName }}
- name: peer-ca
  mountPath: {{ $p.peerCa }}
  readOnly: true
{{- end }}
{{- if $k.peerExchange.tls.clientCertSecretName }}
- name: peer-client-cert
  mountPath: {{ $p.peerClient }}
  readOnly: true
{{- end }}
{{- if $k.peerExchange.tsig.keyName }}
- name: peer-tsig
  mountPath: {{ $p.peerTsig }}
  readOnly: true
{{- end }}
{{- if $k.delegation.rfc2136.enabled }}
- name: rfc2136-tsig
  mountPath: {{ $p.rfc2136Tsig }}
  readOnly: true
{{- end }}
{{- range $k.extraVolumeMounts }}
- name: {{ .name }}
  mountPath: {{ .mountPath }}
  {{- with .subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes of the pod. */}}
{{- define "k8gb.volumes" -}}
{{- $k := .Values.k8gb -}}
{{- if $k.dot.enabled }}
- name: dot-cert
  secret:
    secretName: {{ $k.dot.secretName }}
    defaultMode: 288 # 0440: the pod's group (fsGroup) reads it
{{- if $k.dot.clientCaSecretName }}
- name: dot-client-ca
  secret:
    secretName: {{ $k.dot.clientCaSecretName }}
    defaultMode: 288 # 0440: the pod's group (fsGroup) reads it
{{- end }}
{{- end }}
{{- if $k.peerExchange.tls.caSecretName }}
- name: peer-ca
  secret:
    secretName: {{ $k.peerExchange.tls.caSecretName }}
    defaultMode: 288 # 0440: the pod's group (fsGroup) reads it
{{- end }}
{{- if $k.peerExchange.tls.clientCertSecretName }}
- name: peer-client-cert
  secret:
    secretName: {{ $k.peerExchange.tls.clientCertSecretName }}
    defaultMode: 288 # 0440: the pod's group (fsGroup) reads it
{{- end }}
{{- if $k.peerExchange.tsig.keyName }}
- name: peer-tsig
  secret:
    secretName: {{ $k.peerExchange.tsig.secretName }}
    defaultMode: 288 # 0440: the pod's group (fsGroup) reads it
    items:
      - key: {{ $k.peerExchange.tsig.secretKey }}
        path: {{ $k.peerExchange.tsig.secretKey }}
{{- end }}
{{- if $k.delegation.rfc2136.enabled }}
- name: rfc2136-tsig
  secret:
    secretName: {{ $k.delegation.rfc2136.secretName }}
    defaultMode: 288 # 0440: the pod's group (fsGroup) reads it
    items:
      - key: {{ $k.delegation.rfc2136.secretKey }}
        path: {{ $k.delegation.rfc2136.secretKey }}
{{- end }}
{{- with $k.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
