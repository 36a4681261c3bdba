"""Static checks of the deployment files: hadolint for the Dockerfiles, actionlint for the
GitHub workflows, and what the Dockerfile must say whatever the linters think."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "tests" / "deploy" / "e2e" / "openldap" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(hadolint_bin: str, dockerfile: Path) -> None:
    res = subprocess.run(
        [hadolint_bin, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint(actionlint_bin: str) -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "release.yml", "e2e.yml"}
    res = subprocess.run(
        [actionlint_bin, "-no-color", *map(str, workflows)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_shape() -> None:
    """Multi-stage, base from a build argument (an official slim Python by default), non-root
    numeric user, entrypoint and command, OCI labels, no CA baked in."""
    text = (ROOT / "Dockerfile").read_text()
    ins = _instructions(text)
    args = [rest for word, rest in ins if word == "ARG"]
    assert "PYTHON_IMAGE=python:3.12-slim-bookworm" in args
    froms = [rest for word, rest in ins if word == "FROM"]
    # The last stage flattens the pruned runtime stage into one layer.
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime", "scratch"]
    starts = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    runtime, final = ins[starts[1] : starts[2]], ins[starts[2] :]
    assert ("COPY", "--from=runtime / /") in final
    user = [rest for word, rest in final if word == "USER"]
    assert len(user) == 1
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user[0])
    assert ("ENTRYPOINT", '["bwsync"]') in final
    assert ("CMD", '["sync"]') in final
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels
    # python-ldap is built in the builder; the runtime gets only its shared libraries.
    runtime_runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert "libldap-2.5-0" in runtime_runs
    assert "libldap2-dev" not in runtime_runs
    assert "gcc" not in runtime_runs
    assert "uv sync --frozen" in text
    # The proxy CA arrives only as an optional build secret, never COPY'd or ADD'ed.
    assert "ca-certificates.crt" not in text.replace(
        "--secret id=build_ca,src=/etc/ssl/certs/ca-certificates.crt", ""
    )
    assert "type=secret,id=build_ca,required=false" in text


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed >= {"pyproject.toml", "uv.lock", "README.md", "job"}
    assert not allowed & {"tests", ".git", ".venv", "helm", ".tools"}


def test_workflows_cover_what_the_issue_asks() -> None:
    wf = {
        p.stem: yaml.safe_load(p.read_text())
        for p in (ROOT / ".github" / "workflows").glob("*.yml")
    }
    ci_jobs = wf["ci"]["jobs"]
    assert {"lint", "typecheck", "test", "hadolint", "helm", "image", "actionlint"} <= set(ci_jobs)
    release = yaml.safe_dump(wf["release"])
    for needle in ("linux/amd64,linux/arm64", "sbom: true", "provenance", "cosign sign",
                   "helm push", "oci://", "id-token: write"):  # fmt: skip
        assert needle in release, needle
    # PyYAML reads the key `on` as True.
    assert wf["release"][True]["push"]["tags"]
    e2e = yaml.safe_dump(wf["e2e"])
    for needle in ("helm/kind-action", "create job --from=cronjob/bwsync", "bwsync-state",
                   "helm test", "PodFailurePolicy"):  # fmt: skip
        assert needle in e2e, needle
