{{/* Chart name, release fullname, labels. */}}
{{- define "bwsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bwsync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "bwsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bwsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bwsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bwsync.labels" -}}
helm.sh/chart: {{ include "bwsync.chart" . }}
{{ include "bwsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bwsync
{{- end -}}

{{- define "bwsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bwsync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The `helm test` pods' own ServiceAccount: read-only on the state, nothing else. */}}
{{- define "bwsync.testServiceAccountName" -}}
{{- printf "%s-test" (include "bwsync.fullname" .) -}}
{{- end -}}

{{- define "bwsync.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Deep merge of the second map into the first, in place. Unlike sprig's mergeOverwrite, a false,
0 or "" in the override wins (a profile can set `suspend: false` over a top-level true).
*/}}
{{- define "bwsync.deepMerge" -}}
{{- $dst := index . 0 -}}
{{- $src := index . 1 -}}
{{- range $k, $v := $src -}}
{{- if and (kindIs "map" $v) (kindIs "map" (index $dst $k)) -}}
{{- include "bwsync.deepMerge" (list (index $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The sync profiles as YAML `{profiles: [{profile, name, stateName, values}]}`: the top-level
values alone as profile `default` when `profiles` is empty, else one entry per profile with the
profile's keys deep-merged over the top-level values. `name` names the CronJob and the Secret.
*/}}
{{/*
The command line of a profile's scheduled runs: its `args`, else what its `mode` means.
Argument: the profile's merged values.
*/}}
{{- define "bwsync.runArgs" -}}
{{- if .args -}}
{{- toYaml .args -}}
{{- else if eq .mode "sync" -}}
{{- toYaml (list "sync") -}}
{{- else -}}
{{- toYaml (list "plan" "--output" "text") -}}
{{- end -}}
{{- end -}}

{{/*
"true" when every profile pushes its metrics (settings.metrics.pushgateway_url), else "".
*/}}
{{- define "bwsync.metricsWired" -}}
{{- $wired := true -}}
{{- range (include "bwsync.profiles" . | fromYaml).profiles -}}
{{- if not (and .values.settings.metrics .values.settings.metrics.pushgateway_url) -}}
{{- $wired = false -}}
{{- end -}}
{{- end -}}
{{- if $wired -}}true{{- end -}}
{{- end -}}

{{- define "bwsync.profiles" -}}
{{- $full := include "bwsync.fullname" . -}}
{{- $keys := list "schedule" "timeZone" "suspend" "mode" "args" "settings" "secrets" "secretFiles" "existingSecret" "state" "extraEnv" "resources" -}}
{{- $base := dict -}}
{{- range $keys -}}
{{- $_ := set $base . (deepCopy (index $.Values .)) -}}
{{- end -}}
{{- $out := list -}}
{{- if not .Values.profiles -}}
{{- $out = append $out (dict "profile" "default" "name" $full "values" $base) -}}
{{- else -}}
{{- range $pname, $over := .Values.profiles -}}
{{- $vals := deepCopy $base -}}
{{- include "bwsync.deepMerge" (list $vals (default dict $over)) -}}
{{- $out = append $out (dict "profile" $pname "name" (printf "%s-%s" $full $pname | trunc 52 | trimSuffix "-") "values" $vals) -}}
{{- end -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $out -}}
{{- $st := .values.state -}}
{{- if eq $st.backend "configmap" -}}
{{- $cm := default (printf "%s-state" .name) $st.configmap.name -}}
{{- if hasKey $seen $cm -}}
{{- fail (printf "profiles %s and %s would share the state ConfigMap %s: give each its own state.configmap.name" (index $seen $cm) .profile $cm) -}}
{{- end -}}
{{- $_ := set $seen $cm .profile -}}
{{- $_ := set . "stateName" $cm -}}
{{- else if eq $st.backend "objectstore" -}}
{{- if not $st.objectstore.url -}}
{{- fail (printf "profile %s: state.backend is objectstore but state.objectstore.url is empty" .profile) -}}
{{- end -}}
{{- if hasKey $seen $st.objectstore.url -}}
{{- fail (printf "profiles %s and %s would share the state object %s: give each its own state.objectstore.url" (index $seen $st.objectstore.url) .profile $st.objectstore.url) -}}
{{- end -}}
{{- $_ := set $seen $st.objectstore.url .profile -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "profiles" $out) -}}
{{- end -}}

{{/* Names of the state ConfigMaps of all profiles, as a YAML list. */}}
{{- define "bwsync.stateConfigMaps" -}}
{{- $names := list -}}
{{- range (include "bwsync.profiles" . | fromYaml).profiles -}}
{{- if .stateName -}}
{{- $names = append $names .stateName -}}
{{- end -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}

{{/* One environment variable from a setting value (skipped when null or ""). */}}
{{- define "bwsync.envVar" -}}
{{- $name := index . 0 -}}
{{- $v := index . 1 -}}
{{- if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v ""))) }}
- name: {{ $name }}
  {{- if kindIs "float64" $v }}
  value: {{ (ternary (int64 $v | toString) (toString $v) (eq (float64 (int64 $v)) $v)) | quote }}
  {{- else }}
  value: {{ toString $v | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The sync container's environment for one profile: the chart-managed settings, then `settings`
as BWSYNC_<SECTION>__<FIELD>, then extraEnv. Argument: (list $ $profile).
*/}}
{{- define "bwsync.env" -}}
{{- $ := index . 0 -}}
{{- $p := index . 1 -}}
{{- $v := $p.values -}}
- name: BWSYNC_PROFILE
  value: {{ $p.profile | quote }}
- name: BWSYNC_SECRETS_DIR
  value: /run/secrets/bwsync
- name: BWSYNC_STATE__BACKEND
  value: {{ $v.state.backend | quote }}
{{- if eq $v.state.backend "configmap" }}
- name: BWSYNC_STATE__CONFIGMAP
  value: {{ $p.stateName | quote }}
- name: BWSYNC_STATE__NAMESPACE
  value: {{ $.Release.Namespace | quote }}
{{- else if eq $v.state.backend "objectstore" }}
- name: BWSYNC_STATE__URL
  value: {{ $v.state.objectstore.url | quote }}
{{- if $v.state.objectstore.endpoint }}
- name: BWSYNC_STATE__ENDPOINT
  value: {{ $v.state.objectstore.endpoint | quote }}
{{- end }}
{{- end }}
{{- range $key, $val := $v.settings }}
{{- if kindIs "map" $val }}
{{- range $field, $fv := $val }}
{{- include "bwsync.envVar" (list (printf "BWSYNC_%s__%s" ($key | upper) ($field | upper)) $fv) }}
{{- end }}
{{- else }}
{{- include "bwsync.envVar" (list (printf "BWSYNC_%s" ($key | upper)) $val) }}
{{- end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The name of the Secret mounted for a profile. Argument: (list $ $profile). */}}
{{- define "bwsync.secretName" -}}
{{- $p := index . 1 -}}
{{- default $p.name $p.values.existingSecret -}}
{{- end -}}

{{/*
The pod spec shared by the CronJob and the `helm test` pod. Argument: (list $ $profile $args)
or (list $ $profile $args $serviceAccountName) for another ServiceAccount than the sync's.
*/}}
{{- define "bwsync.podSpec" -}}
{{- $ := index . 0 -}}
{{- $p := index . 1 -}}
{{- $args := index . 2 -}}
{{- $sa := include "bwsync.serviceAccountName" $ -}}
{{- if gt (len .) 3 }}{{ $sa = index . 3 }}{{ end }}
serviceAccountName: {{ $sa }}
automountServiceAccountToken: {{ eq $p.values.state.backend "configmap" }}
restartPolicy: Never
{{- /* bwsync's stop grace, then 30 s to give the lease back and push metrics (bwsync.stop) */}}
{{- $grace := $p.values.settings.stop_grace_seconds | default 20 | float64 }}
{{- if lt (float64 $.Values.terminationGracePeriodSeconds) (addf $grace 30) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least settings.stop_grace_seconds (%v) + 30: after the grace period bwsync still gives its state lease back and pushes its metrics" $.Values.terminationGracePeriodSeconds $grace) }}
{{- end }}
{{- /* a grace set past the check above would let the pod be killed before its lease is back */}}
{{- range $p.values.extraEnv }}
{{- if eq (toString .name) "BWSYNC_STOP_GRACE_SECONDS" }}
{{- fail (printf "extraEnv of profile %s: set settings.stop_grace_seconds, not BWSYNC_STOP_GRACE_SECONDS: the chart checks it against terminationGracePeriodSeconds" $p.profile) }}
{{- end }}
{{- end }}
terminationGracePeriodSeconds: {{ $.Values.terminationGracePeriodSeconds }}
enableServiceLinks: false
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
containers:
  - name: bwsync
    image: {{ include "bwsync.image" $ | quote }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    args:
      {{- toYaml $args | nindent 6 }}
    env:
      {{- include "bwsync.env" (list $ $p) | nindent 6 }}
    {{- with $.Values.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    {{- with $p.values.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: secrets
        mountPath: /run/secrets/bwsync
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- with $.Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: secrets
    secret:
      secretName: {{ include "bwsync.secretName" (list $ $p) }}
      defaultMode: 0440
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: {{ $.Values.tmpSizeLimit }}
  {{- with $.Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
