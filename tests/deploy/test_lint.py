"""Static checks of the deployment files: hadolint for the Dockerfiles, actionlint for the
GitHub workflows, the .dockerignore's allow-list, and what the workflows do, read as parsed YAML
and shell commands. What the Dockerfile builds is checked on the built image
(tests/deploy/test_image.py), not on its text."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

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


def _workflows() -> dict[str, Any]:
    return {
        p.stem: yaml.safe_load(p.read_text())
        for p in (ROOT / ".github" / "workflows").glob("*.yml")
    }


def _commands(job: dict[str, Any]) -> list[list[str]]:
    """Every command line of a job's ``run`` scripts, as the shell would split it (pipelines
    and ``&&`` lists cut into their commands)."""
    out: list[list[str]] = []
    for step in job["steps"]:
        script = re.sub(r"\\\n", " ", step.get("run", ""))
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in [*words, "|"]:
                if word in ("|", "||", "&&", ";"):
                    if command:
                        out.append(command)
                    command = []
                else:
                    command.append(word)
    return out


def _runs(job: dict[str, Any], *argv: str) -> bool:
    """Whether the job runs a command starting with ``argv``."""
    return any(c[: len(argv)] == list(argv) for c in _commands(job))


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The steps of ``job`` using ``action`` (any version)."""
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == action]


def test_ci_runs_every_check() -> None:
    ci = _workflows()["ci"]["jobs"]
    assert {"lint", "typecheck", "test", "hadolint", "helm", "image", "actionlint"} <= set(ci)


def _readme_setup_commands() -> list[list[str]]:
    """The README's two set-up commands: the first code block of its opening section."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("\n```\n", 2)[1]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_ci_run_runs_the_readme_test_command_under_ci() -> None:
    """.ci/run (what CI runs on a fresh clone, as root) runs the README's own test command with
    CI=true, after a set-up and the lint: the command a newcomer types is the one CI proves, and
    a tool missing there fails the run instead of skipping its tests."""
    readme = _readme_setup_commands()
    assert ["./dev", "test"] in readme, readme
    script = (ROOT / ".ci" / "run").read_text()
    lines = [shlex.split(line, comments=True) for line in script.splitlines()]
    commands = [words for words in lines if words]
    assert ["set", "-euo", "pipefail"] in commands
    assert commands.index(["export", "CI=true"]) < commands.index(["./dev", "setup"])
    assert commands[-3:] == [["./dev", "setup"], ["./dev", "lint"], ["./dev", "test"]]
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111


def test_a_version_tag_publishes_a_signed_multi_arch_image_and_chart() -> None:
    release = _workflows()["release"]
    # PyYAML reads the key `on` as True.
    assert release[True] == {"push": {"tags": ["v*.*.*"]}}
    jobs = release["jobs"]
    image = jobs["image"]
    assert image["permissions"]["id-token"] == "write"  # keyless signing
    (build,) = _uses(image, "docker/build-push-action")
    given = build["with"]
    assert set(given["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert given["push"] is True and given["sbom"] is True and given["provenance"]
    # the build arguments the Dockerfile turns into labels (tests/deploy/test_image.py)
    args = {line.split("=", 1)[0] for line in given["build-args"].splitlines() if line.strip()}
    assert args == {"VERSION", "REVISION", "CREATED"}
    # the digest just pushed is the one signed
    (sign,) = [s for s in image["steps"] if _runs({"steps": [s]}, "cosign", "sign")]
    assert sign["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}"
    assert build["id"] == "build"
    chart = jobs["chart"]
    assert chart["permissions"]["id-token"] == "write"
    assert set(chart["needs"]) == {"version", "image"}
    assert _runs(chart, "helm", "package") and _runs(chart, "helm", "push")
    assert _runs(chart, "cosign", "sign")
    (push,) = [c for c in _commands(chart) if c[:2] == ["helm", "push"]]
    assert [w for w in push if w.startswith("oci://")]


def test_the_e2e_workflow_installs_the_chart_into_a_real_cluster() -> None:
    job = _workflows()["e2e"]["jobs"]["kind"]
    assert _uses(job, "helm/kind-action")
    assert _runs(job, "helm", "install", "bwsync", "helm/bwsync")
    created = [c for c in _commands(job) if c[:1] == ["kubectl"] and "job" in c and "create" in c]
    assert any("--from=cronjob/bwsync" in c for c in created)
    assert _runs(job, "helm", "test", "bwsync")
    # a bad setting's Job fails at once through the podFailurePolicy (exit 2)
    assert any(c[:1] == ["["] and "PodFailurePolicy" in c for c in _commands(job))
