{{/*
Names, labels and the shared pieces of every component.
*/}}

{{- define "ticketing.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>` (or the release name when it already contains the chart name). */}}
{{- define "ticketing.fullname" -}}
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

{{- define "ticketing.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "ticketing.labels" -}}
helm.sh/chart: {{ include "ticketing.chart" . }}
{{ include "ticketing.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ticketing
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ticketing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ticketing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component's resources. Context: dict "root" $ "name" <component>. */}}
{{- define "ticketing.componentLabels" -}}
{{ include "ticketing.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "ticketing.componentSelectorLabels" -}}
{{ include "ticketing.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* `<fullname>-<component>`: the name of a component's Deployment, Service, HPA, PDB, ... */}}
{{- define "ticketing.componentFullname" -}}
{{- printf "%s-%s" (include "ticketing.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ticketing.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ticketing.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ticketing.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The settings of one component: componentDefaults with the component's entry merged over them.
Context: dict "root" $ "name" <component>. Returns YAML (use with fromYaml).
*/}}
{{- define "ticketing.component" -}}
{{- $entry := index .root.Values.components .name | default dict -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.componentDefaults) (deepCopy $entry) -}}
{{- if not $merged.args -}}
{{- $_ := set $merged "args" (list "serve" .name) -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* Is the component enabled? Context: dict "root" $ "name" <component>. Returns "true" or "". */}}
{{- define "ticketing.enabled" -}}
{{- $entry := index .root.Values.components .name | default dict -}}
{{- if and (hasKey .root.Values.components .name) (ne (toString (get $entry "enabled")) "false") -}}
true
{{- end -}}
{{- end -}}

{{/* The schema registry every component talks to. */}}
{{- define "ticketing.schemaRegistryUrl" -}}
{{- if .Values.schemaRegistry.url -}}
{{- .Values.schemaRegistry.url -}}
{{- else if include "ticketing.enabled" (dict "root" . "name" "schema-registry") -}}
{{- printf "http://%s.%s.svc:%v" (include "ticketing.componentFullname" (dict "root" . "name" "schema-registry")) .Release.Namespace .Values.ticketing.port -}}
{{- end -}}
{{- end -}}

{{/* SCYLLA_REPLICATION as a CQL map literal. */}}
{{- define "ticketing.scyllaReplication" -}}
{{- $r := .Values.scylla.replication -}}
{{- if eq $r.class "NetworkTopologyStrategy" -}}
{{- $parts := list "'class': 'NetworkTopologyStrategy'" -}}
{{- range $dc := keys $r.dataCenters | sortAlpha -}}
{{- $parts = append $parts (printf "'%s': %v" $dc (index $r.dataCenters $dc)) -}}
{{- end -}}
{{- printf "{%s}" (join ", " $parts) -}}
{{- else -}}
{{- printf "{'class': 'SimpleStrategy', 'replication_factor': %v}" $r.replicationFactor -}}
{{- end -}}
{{- end -}}

{{/* `key=value,...` of a topic config map, keys sorted. */}}
{{- define "ticketing.topicConfig" -}}
{{- $parts := list -}}
{{- range $key := keys . | sortAlpha -}}
{{- $parts = append $parts (printf "%s=%v" $key (index $ $key)) -}}
{{- end -}}
{{- join "," $parts -}}
{{- end -}}

{{- define "ticketing.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "ticketing.fullname" .)) .Values.jwt.existingSecret -}}
{{- end -}}

{{- define "ticketing.masterKeySecretName" -}}
{{- default (printf "%s-master-key" (include "ticketing.fullname" .)) .Values.masterKey.existingSecret -}}
{{- end -}}

{{- define "ticketing.masterKeySecretKey" -}}
{{- if .Values.masterKey.existingSecret -}}{{ .Values.masterKey.existingSecretKey }}{{- else -}}master-key{{- end -}}
{{- end -}}

{{- define "ticketing.jwtSecretKey" -}}
{{- if .Values.jwt.existingSecret -}}{{ .Values.jwt.existingSecretKey }}{{- else -}}jwt-key{{- end -}}
{{- end -}}

{{- define "ticketing.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{- define "ticketing.kafkaTls" -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.tls.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Fails the render with a clear message on settings that cannot work. */}}
{{- define "ticketing.validate" -}}
{{- if not .Values.kafka.brokers -}}
{{- fail "kafka.brokers is required: the bootstrap servers of your Kafka cluster" -}}
{{- end -}}
{{- if not .Values.scylla.contactPoints -}}
{{- fail "scylla.contactPoints is required: the contact points of your ScyllaDB cluster" -}}
{{- end -}}
{{- if and (include "ticketing.kafkaSasl" .) (not .Values.kafka.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.existingSecret (the secret with the password)" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (include "ticketing.kafkaSasl" .) (not .Values.kafka.sasl.usernameKey) (not .Values.kafka.sasl.username) -}}
{{- fail "SASL needs kafka.sasl.username or kafka.sasl.usernameKey" -}}
{{- end -}}
{{- if not (include "ticketing.schemaRegistryUrl" .) -}}
{{- fail "set schemaRegistry.url (an external registry) or enable components.schema-registry (the bundled one)" -}}
{{- end -}}
{{- if and (eq .Values.scylla.replication.class "NetworkTopologyStrategy") (not .Values.scylla.replication.dataCenters) -}}
{{- fail "scylla.replication.class=NetworkTopologyStrategy needs scylla.replication.dataCenters (datacenter name -> replicas)" -}}
{{- end -}}
{{- end -}}

{{/*
Environment of the application containers and of the init Job.
Context: dict "root" $ "name" <component or "init"> "component" <merged settings or nil> "job" <bool>.
*/}}
{{- define "ticketing.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: TICKETING_ADDR
  value: {{ printf "0.0.0.0:%v" $v.ticketing.port | quote }}
{{- if not .job }}
{{- /* Where the other instances forward commands for the partitions this one owns: the
       internal listener, reached pod to pod, never through a Service or the ingress. */}}
- name: TICKETING_INTERNAL_ADDR
  value: {{ printf "0.0.0.0:%v" $v.ticketing.internalPort | quote }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: TICKETING_ADVERTISED_URL
  value: {{ printf "http://$(POD_IP):%v" $v.ticketing.internalPort | quote }}
{{- end }}
- name: TICKETING_DATA_DIR
  value: /tmp
- name: TICKETING_NAMESPACE
  value: {{ $v.ticketing.namespace | quote }}
- name: RUST_LOG
  value: {{ $v.ticketing.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ $v.ticketing.logFormat | quote }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.brokers | quote }}
- name: KAFKA_TOPIC_PARTITIONS
  value: {{ $v.kafka.topics.partitions | quote }}
- name: KAFKA_REPLICATION_FACTOR
  value: {{ $v.kafka.topics.replicationFactor | quote }}
- name: KAFKA_TOPIC_CONFIG
  value: {{ include "ticketing.topicConfig" $v.kafka.topics.config | quote }}
- name: KAFKA_SCHEMAS_TOPIC_CONFIG
  value: {{ include "ticketing.topicConfig" $v.kafka.topics.schemasConfig | quote }}
- name: KAFKA_PROPERTY_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if include "ticketing.kafkaSasl" $root }}
- name: KAFKA_PROPERTY_SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
{{- if $v.kafka.sasl.usernameKey }}
- name: KAFKA_PROPERTY_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.sasl.existingSecret }}
      key: {{ $v.kafka.sasl.usernameKey }}
{{- else }}
- name: KAFKA_PROPERTY_SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
{{- end }}
- name: KAFKA_PROPERTY_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.sasl.existingSecret }}
      key: {{ $v.kafka.sasl.passwordKey }}
{{- end }}
{{- if has $v.kafka.securityProtocol (list "SSL" "SASL_SSL") }}
- name: KAFKA_PROPERTY_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM
  value: {{ $v.kafka.tls.endpointIdentificationAlgorithm | quote }}
{{- end }}
{{- if include "ticketing.kafkaTls" $root }}
- name: KAFKA_PROPERTY_SSL_CA_LOCATION
  value: {{ printf "/etc/ticketing/kafka-tls/%s" $v.kafka.tls.caKey | quote }}
{{- if and $v.kafka.tls.certKey $v.kafka.tls.keyKey }}
- name: KAFKA_PROPERTY_SSL_CERTIFICATE_LOCATION
  value: {{ printf "/etc/ticketing/kafka-tls/%s" $v.kafka.tls.certKey | quote }}
- name: KAFKA_PROPERTY_SSL_KEY_LOCATION
  value: {{ printf "/etc/ticketing/kafka-tls/%s" $v.kafka.tls.keyKey | quote }}
{{- end }}
{{- end }}
{{- range $key := keys $v.kafka.properties | sortAlpha }}
- name: {{ printf "KAFKA_PROPERTY_%s" ($key | replace "." "_" | replace "-" "_" | upper) }}
  value: {{ index $v.kafka.properties $key | toString | quote }}
{{- end }}
- name: SCYLLA_URI
  value: {{ join "," $v.scylla.contactPoints | quote }}
- name: SCYLLA_KEYSPACE_PREFIX
  value: {{ $v.scylla.keyspacePrefix | quote }}
- name: SCYLLA_REPLICATION
  value: {{ include "ticketing.scyllaReplication" $root | quote }}
- name: SCYLLA_CONSISTENCY
  value: {{ $v.scylla.consistency | quote }}
{{- if $v.scylla.localDatacenter }}
- name: SCYLLA_LOCAL_DC
  value: {{ $v.scylla.localDatacenter | quote }}
{{- end }}
{{- if $v.scylla.auth.existingSecret }}
- name: SCYLLA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $v.scylla.auth.existingSecret }}
      key: {{ $v.scylla.auth.usernameKey }}
- name: SCYLLA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.scylla.auth.existingSecret }}
      key: {{ $v.scylla.auth.passwordKey }}
{{- end }}
{{- if .job }}
{{- /* The init Job runs before the bundled registry exists: without a URL it creates the
       registry's compacted topic itself. */}}
{{- if $v.schemaRegistry.url }}
- name: SCHEMA_REGISTRY_URL
  value: {{ $v.schemaRegistry.url | quote }}
{{- end }}
{{- else }}
- name: SCHEMA_REGISTRY_URL
  value: {{ include "ticketing.schemaRegistryUrl" $root | quote }}
- name: JWT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "ticketing.jwtSecretName" $root }}
      key: {{ include "ticketing.jwtSecretKey" $root }}
{{- if eq .name "users" }}
- name: TICKETING_MASTER_KEY_FILE
  value: /etc/ticketing/master-key/master-key
{{- with $v.admin.existingSecret }}
- name: TICKETING_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.admin.existingSecretKey }}
{{- end }}
{{- end }}
- name: SESSION_TTL_SECONDS
  value: {{ $v.ticketing.sessionTtlSeconds | quote }}
- name: COOKIE_SECURE
  value: {{ $v.ticketing.cookieSecure | quote }}
- name: SIGNIN_LIMIT_PER_ADDRESS
  value: {{ $v.ticketing.signInLimits.perAddress | quote }}
- name: SIGNIN_LIMIT_PER_ACCOUNT_ADDRESS
  value: {{ $v.ticketing.signInLimits.perAccountAddress | quote }}
- name: SIGNIN_LIMIT_PER_ACCOUNT
  value: {{ $v.ticketing.signInLimits.perAccount | quote }}
{{- with $v.ticketing.trustedProxies }}
- name: TICKETING_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- if $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "ticketing-%s" .name | quote }}
{{- end }}
{{- with .component }}
{{- range $key := keys .env | sortAlpha }}
- name: {{ $key }}
  value: {{ index $.component.env $key | toString | quote }}
{{- end }}
{{- range .secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with $v.ticketing.extraEnv }}
{{ tpl (toYaml .) $root }}
{{- end }}
{{- end -}}

{{/* Volume mounts of the application containers and the init Job. */}}
{{- define "ticketing.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "ticketing.kafkaTls" . }}
- name: kafka-tls
  mountPath: /etc/ticketing/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes of the application pods and the init Job. Context: dict "root" $ "sizeLimit" <quantity>. */}}
{{- define "ticketing.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .sizeLimit }}
{{- if include "ticketing.kafkaTls" .root }}
- name: kafka-tls
  secret:
    secretName: {{ .root.Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}
