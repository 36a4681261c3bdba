"""Regenerate helm/bwsync/values.schema.json: `uv run python -m tests.deploy.schema_gen`.

The `settings` and `secrets` parts come from bwsync's settings models (config.py), so a setting
added there is one rerun away from the chart; the rest of the schema is written out below.
tests/deploy/test_chart.py checks that the committed schema names only real settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bwsync.config import Settings
from bwsync.reference import field_docs

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "helm" / "bwsync" / "values.schema.json"

#: Top-level settings the chart sets itself (never from `settings`).
CHART_MANAGED = {"profile", "secrets_dir"}
#: Per section: the fields `settings.<section>` may not carry, because the chart manages them.
CHART_MANAGED_FIELDS = {
    "state": {"backend", "path", "configmap", "namespace", "url", "endpoint"},
}
#: Non-secret settings commonly kept in the Secret next to the credentials they go with.
SECRET_COMPANIONS = {
    "bitwarden": {"client_id"},
    "ldap": {"bind_dn"},
    "metrics": {"pushgateway_username"},
}
#: Durations the chart computes with (``_helpers.tpl`` compares ``stop_grace_seconds`` with
#: ``terminationGracePeriodSeconds``): a number of seconds there, since Helm's templates cannot
#: read `45s`. bwsync itself accepts either spelling in the environment.
CHART_ARITHMETIC = {"stop_grace_seconds"}
_KEEP = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern")


def _field_schema(prop: dict[str, Any], description: str | None) -> dict[str, Any]:
    """A JSON schema for one setting as a Helm value: its type, or null (= not set)."""
    variants = prop.get("anyOf", [prop])
    out: list[dict[str, Any]] = []
    for v in variants:
        if v.get("type") == "null":
            continue
        out.append({k: v[k] for k in _KEEP if k in v})
        if all(isinstance(e, str) for e in v.get("enum", [None])):
            out.append({"type": "string", "pattern": _any_case(v["enum"])})
    result: dict[str, Any] = out[0] if len(out) == 1 else {"anyOf": out}
    if "type" in result:
        result["type"] = [result["type"], "null"]
    else:
        result = {"anyOf": [*out, {"type": "null"}]}
    if description:
        result["description"] = description
    return result


_SPECIAL = set(".^$*+?()[]{}|\\")


def _any_case(choices: list[str]) -> str:
    """A pattern matching any of ``choices`` in any letter case, as bwsync reads a choice
    (``BWSYNC_LOG__LEVEL=DEBUG``); JSON schema's patterns have no case-insensitive flag. The
    plain ``enum`` stays beside it, so the schema still lists the choices."""

    def letters(word: str) -> str:
        return "".join(
            f"[{c.lower()}{c.upper()}]" if c.isalpha() else ("\\" + c if c in _SPECIAL else c)
            for c in word
        )

    return "^(" + "|".join(letters(c) for c in choices) + ")$"


def _numbers_only(prop: dict[str, Any]) -> dict[str, Any]:
    """A duration's schema without its string spelling (see ``CHART_ARITHMETIC``)."""
    return {"anyOf": [v for v in prop.get("anyOf", [prop]) if v.get("type") != "string"]}


def _is_secret(section: type, field: str) -> bool:
    ann = section.model_fields[field].annotation  # type: ignore[attr-defined]
    return SecretStr in getattr(ann, "__args__", (ann,))


def settings_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of `settings`, schema of `secrets`) derived from the settings models."""
    full = Settings.model_json_schema()
    defs = full["$defs"]
    settings_props: dict[str, Any] = {}
    secrets_props: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        if name in CHART_MANAGED:
            continue
        section_model = info.annotation
        prop = full["properties"][name]
        if "$ref" not in prop:
            if name in CHART_ARITHMETIC:
                prop = {k: v for k, v in prop.items() if k != "anyOf"} | _numbers_only(prop)
            settings_props[name] = _field_schema(prop, field_docs(Settings).get(name))
            continue
        sdef = defs[prop["$ref"].rsplit("/", 1)[1]]
        plain: dict[str, Any] = {}
        secret: dict[str, Any] = {}
        for field, fprop in sdef["properties"].items():
            if field in CHART_MANAGED_FIELDS.get(name, set()):
                continue
            fschema = _field_schema(fprop, field_docs(section_model).get(field))  # type: ignore[arg-type]
            if _is_secret(section_model, field):  # type: ignore[arg-type]
                secret[field] = fschema
                continue
            plain[field] = fschema
            if field in SECRET_COMPANIONS.get(name, set()):
                secret[field] = fschema
        settings_props[name] = {
            "type": "object",
            "description": sdef.get("description", ""),
            "additionalProperties": False,
            "properties": plain,
        }
        if secret:
            secrets_props[name] = {
                "type": "object",
                "additionalProperties": False,
                "properties": secret,
            }
    settings = {
        "type": "object",
        "description": "bwsync settings, set as BWSYNC_<SECTION>__<FIELD> variables.",
        "additionalProperties": False,
        "properties": settings_props,
    }
    secrets = {
        "type": "object",
        "description": "Secret settings, mounted as files bwsync_<section>__<field>.",
        "additionalProperties": False,
        "properties": secrets_props,
    }
    return settings, secrets


def _obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, **extra}


STR = {"type": "string"}
BOOL = {"type": "boolean"}
NONNEG = {"type": "integer", "minimum": 0}
POS = {"type": "integer", "minimum": 1}
MAP = {"type": "object"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
LIST_OF_OBJ = {"type": "array", "items": {"type": "object"}}
CRON = {"type": "string", "minLength": 9, "description": "Cron schedule, e.g. `17 * * * *`."}
ARGS = {
    "type": "array",
    "items": {"type": "string"},
    "description": "bwsync's whole command line after the entrypoint, instead of `mode`'s; "
    "empty: from `mode`.",
}
MODE = {
    "type": "string",
    "enum": ["plan", "sync"],
    "description": "What the schedule runs: `plan` (shows, changes nothing) or `sync`.",
}
SECRET_FILES = {
    "type": "object",
    "description": "Extra files in the chart's Secret: file name → content.",
    "propertyNames": {"pattern": "^[-._a-zA-Z0-9]+$"},
    "additionalProperties": {"type": "string"},
}
RESOURCES = _obj(
    {"requests": MAP, "limits": MAP, "claims": LIST_OF_OBJ},
)


def build() -> dict[str, Any]:
    settings, secrets = settings_schemas()
    state = _obj(
        {
            "backend": {"type": "string", "enum": ["configmap", "objectstore", "none"]},
            "configmap": _obj({"name": STR}),
            "objectstore": _obj({"url": STR, "endpoint": STR}),
        }
    )
    profile = _obj(
        {
            "schedule": {"$ref": "#/definitions/cron"},
            "timeZone": STR,
            "suspend": BOOL,
            "mode": MODE,
            "args": {"$ref": "#/definitions/args"},
            "settings": {"$ref": "#/definitions/settings"},
            "secrets": {"$ref": "#/definitions/secrets"},
            "secretFiles": {"$ref": "#/definitions/secretFiles"},
            "existingSecret": STR,
            "state": {"$ref": "#/definitions/state"},
            "extraEnv": LIST_OF_OBJ,
            "resources": {"$ref": "#/definitions/resources"},
        }
    )
    label_selector = _obj(
        {"matchLabels": STRMAP, "matchExpressions": LIST_OF_OBJ},
    )
    security_context = {"type": "object"}
    props: dict[str, Any] = {
        "global": MAP,
        "image": _obj(
            {
                "repository": {"type": "string", "minLength": 1},
                "tag": STR,
                "digest": {"type": "string", "pattern": "^(|sha256:[0-9a-f]{64})$"},
                "pullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
            }
        ),
        "imagePullSecrets": LIST_OF_OBJ,
        "nameOverride": STR,
        "fullnameOverride": STR,
        "schedule": {"$ref": "#/definitions/cron"},
        "timeZone": STR,
        "suspend": BOOL,
        "startingDeadlineSeconds": {"type": "integer", "minimum": 10},
        "successfulJobsHistoryLimit": NONNEG,
        "failedJobsHistoryLimit": NONNEG,
        "backoffLimit": NONNEG,
        "activeDeadlineSeconds": POS,
        "terminationGracePeriodSeconds": POS,
        "ttlSecondsAfterFinished": NONNEG,
        "mode": MODE,
        "args": {"$ref": "#/definitions/args"},
        "settings": {"$ref": "#/definitions/settings"},
        "secrets": {"$ref": "#/definitions/secrets"},
        "secretFiles": {"$ref": "#/definitions/secretFiles"},
        "existingSecret": STR,
        "state": {"$ref": "#/definitions/state"},
        "profiles": {
            "type": "object",
            "description": "Sync profiles: name → overrides of the top-level values.",
            "propertyNames": {"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 20},
            "additionalProperties": {"$ref": "#/definitions/profile"},
        },
        "extraEnv": LIST_OF_OBJ,
        "extraEnvFrom": LIST_OF_OBJ,
        "extraVolumes": LIST_OF_OBJ,
        "extraVolumeMounts": LIST_OF_OBJ,
        "serviceAccount": _obj({"create": BOOL, "name": STR, "annotations": STRMAP}),
        "podAnnotations": STRMAP,
        "podLabels": STRMAP,
        "jobLabels": STRMAP,
        "podSecurityContext": security_context,
        "securityContext": security_context,
        "resources": {"$ref": "#/definitions/resources"},
        "tmpSizeLimit": {"type": "string", "pattern": "^[0-9]+(Ki|Mi|Gi)?$"},
        "priorityClassName": STR,
        "nodeSelector": STRMAP,
        "tolerations": LIST_OF_OBJ,
        "affinity": MAP,
        "networkPolicy": _obj(
            {
                "enabled": BOOL,
                "dns": _obj({"namespaceSelector": label_selector, "podSelector": label_selector}),
                "kubeApiServer": _obj(
                    {
                        "cidrs": {"type": "array", "items": STR},
                        "ports": {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                        },
                    }
                ),
                "egress": LIST_OF_OBJ,
            }
        ),
        "metrics": _obj(
            {
                "prometheusRule": _obj(
                    {"enabled": BOOL, "labels": STRMAP, "missedRuns": POS, "intervalSeconds": POS}
                ),
                "grafanaDashboard": _obj(
                    {"enabled": BOOL, "labels": STRMAP, "annotations": STRMAP}
                ),
            }
        ),
        "tests": _obj({"enabled": BOOL, "serviceAccount": _obj({"annotations": STRMAP})}),
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "bwsync chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "definitions": {
            "cron": CRON,
            "args": ARGS,
            "resources": RESOURCES,
            "settings": settings,
            "secrets": secrets,
            "secretFiles": SECRET_FILES,
            "state": state,
            "profile": profile,
        },
    }


def main() -> None:
    SCHEMA_PATH.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
