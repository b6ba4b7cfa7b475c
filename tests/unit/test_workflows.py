"""The CI workflows: schema-valid, and the nightly has the shape publishing relies on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / "ci" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    if True in doc:  # YAML 1.1 reads the key `on` as the boolean True
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(doc["jobs"][job]["steps"])


def index_of(job_steps: list[dict[str, Any]], needle: str) -> int:
    found = [i for i, step in enumerate(job_steps) if needle in str(step.get("run", ""))]
    assert len(found) == 1, f"expected one step running {needle!r}, found {len(found)}"
    return found[0]


def test_workflows_match_the_github_schema() -> None:
    exe = shutil.which("check-jsonschema")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("check-jsonschema is missing in CI; pip install -r ci/requirements-dev.txt")
        pytest.skip("check-jsonschema is not installed; pip install check-jsonschema==0.39.0")
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", str(NIGHTLY), str(PULL_REQUEST)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nightly_runs_on_a_schedule_and_by_hand() -> None:
    on = load(NIGHTLY)["on"]
    assert on["schedule"] and all("cron" in entry for entry in on["schedule"])
    assert set(on["workflow_dispatch"]["inputs"]) == {"channel", "cells"}


def test_nightlies_never_overlap_and_jobs_are_bounded() -> None:
    doc = load(NIGHTLY)
    assert doc["concurrency"]["group"]
    assert doc["concurrency"]["cancel-in-progress"] is False
    for name, job in doc["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout"


def test_build_matrix_comes_from_the_plan_job() -> None:
    jobs = load(NIGHTLY)["jobs"]
    plan, build = jobs["plan"], jobs["build"]
    assert plan["runs-on"] == "ubuntu-latest"
    assert "invoke matrix --json" in " ".join(str(s.get("run", "")) for s in plan["steps"])
    assert "matrix" in plan["outputs"]
    assert build["needs"] == "plan"
    assert build["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert build["strategy"]["fail-fast"] is False
    assert build["runs-on"] == "${{ matrix.runner }}"


def test_publish_runs_after_smoke_in_the_same_job() -> None:
    build = steps(load(NIGHTLY), "build")
    wheels, image = index_of(build, "invoke wheels"), index_of(build, "invoke image")
    smoke, publish = index_of(build, "invoke smoke"), index_of(build, "invoke publish")
    assert wheels < image < smoke < publish
    assert "--require-gpu" in build[smoke]["run"]
    assert "--smoke-report smoke-report.json" in build[publish]["run"]
    # per-key registry cache tags (read and written with mode=max: wheelforge/build/bake.py)
    assert '--cache-registry "$CACHE_REPO"' in build[wheels]["run"]
    uploads = {s["with"]["path"]: i for i, s in enumerate(build)
               if "upload-artifact" in str(s.get("uses", ""))}
    assert smoke < uploads["smoke-report.json"] < publish
    assert wheels < uploads["wheels/timeline.html"] < image


def test_skopeo_is_there_before_anything_reads_the_registry() -> None:
    build = steps(load(NIGHTLY), "build")
    assert index_of(build, "apt-get install -y -qq skopeo") < index_of(build, "invoke push")


def test_registry_credentials_come_only_from_secrets() -> None:
    doc = load(NIGHTLY)
    login = [s for s in steps(doc, "build") if "docker/login-action" in str(s.get("uses", ""))]
    assert len(login) == 1
    assert login[0]["with"]["username"] == "${{ secrets.REGISTRY_USER }}"
    assert login[0]["with"]["password"] == "${{ secrets.REGISTRY_TOKEN }}"
    for path in (NIGHTLY, PULL_REQUEST):
        for job in load(path)["jobs"].values():
            for step in job.get("steps", []):
                run = str(step.get("run", ""))
                assert "secrets." not in run, f"{path.name}: a secret is spliced into a script"
                assert not re.search(r"(?i)password|token", run), f"{path.name}: {run[:60]}"


def test_no_shell_tracing_anywhere() -> None:
    for path in (NIGHTLY, PULL_REQUEST):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"set\s+-[a-wyz]*x|set\s+-o\s+xtrace|bash\s+-x", text), path.name


def test_ca_bundle_is_a_file_passed_as_an_argument_and_removed() -> None:
    build = steps(load(NIGHTLY), "build")
    writer = [s for s in build if "secrets.CA_BUNDLE" in str(s.get("env", {}))]
    assert len(writer) == 1 and "RUNNER_TEMP" in writer[0]["run"]
    assert "--ca-bundle" in build[index_of(build, "invoke wheels")]["run"]
    # the runtime image installs offline from the wheel set: it gets no CA bundle at all
    assert "ca-bundle" not in build[index_of(build, "invoke image")]["run"]
    cleanup = [s for s in build if "rm -f" in str(s.get("run", ""))]
    assert cleanup and cleanup[-1].get("if") == "always()"


def test_pull_request_runs_the_test_entry_point_on_both_pythons() -> None:
    doc = load(PULL_REQUEST)
    assert "pull_request" in doc["on"]
    job = doc["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    assert set(job["strategy"]["matrix"]["python"]) == {"3.11", "3.12"}
    assert any(s.get("run") == "bash .ci/run" for s in job["steps"])
