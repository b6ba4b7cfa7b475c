"""A component's own smoke checks (recipe `smoke:`), read from the manifest and run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from wheelforge.core import types
from wheelforge.recipes import load
from wheelforge.smoke import checks_recipes, cli
from wheelforge.smoke.checks_recipes import RecipeCheck, from_manifest, make_check_fn
from wheelforge.smoke.context import NO_TORCH, Context

REPO = Path(__file__).resolve().parents[2]


def manifest_file(tmp_path: Path, components: dict[str, list[dict[str, Any]]]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"cell": "t", "archs": [], "components": {
        name: {"imports": [], "wheels": [], "smoke": checks}
        for name, checks in components.items()}}))
    return path


def no_device(monkeypatch: pytest.MonkeyPatch, reason: str = "no GPU visible",
              nodes: tuple[str, ...] = ()) -> None:
    monkeypatch.setattr(cli, "detect_device", lambda requested: (None, reason))
    monkeypatch.setattr(checks_recipes, "present_gpu_nodes", lambda: nodes)


def run(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
        ) -> tuple[int, str, dict[str, dict[str, Any]]]:
    report_file = tmp_path / "report.json"
    code = cli.main([*argv, "--report", str(report_file)])
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(report_file.read_text())["checks"]}
    return code, out, checks


def test_checks_are_read_from_the_manifest_in_component_and_recipe_order() -> None:
    manifest = {"components": {
        "zeta": {"smoke": [{"name": "b", "run": "true"}, {"name": "a", "run": "false",
                                                          "gpu": True}]},
        "alpha": {"smoke": [{"name": "one", "run": "echo 1", "gpu": False}]},
        "none": {}}}
    assert from_manifest(manifest) == [RecipeCheck("alpha", "one", "echo 1"),
                                       RecipeCheck("zeta", "b", "true"),
                                       RecipeCheck("zeta", "a", "false", True)]
    names = [c.name for c in cli.with_recipe_checks(cli.CHECKS, manifest)]
    assert names[-4:] == ["alpha:one", "zeta:b", "zeta:a", "no-compile"]
    assert from_manifest(None) == [] and from_manifest({"components": {}}) == []


def test_recipe_checks_run_pass_and_fail_with_their_last_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    no_device(monkeypatch)
    bad = "for i in $(seq 1 30); do echo line $i; done; echo 'boom: wrong value' >&2; exit 3"
    manifest = manifest_file(tmp_path, {
        "lz4": [{"name": "roundtrip", "run": "python -c 'print(\"lz4 ok\")'", "gpu": False}],
        "broken": [{"name": "api", "run": bad, "gpu": False}]})
    code, out, checks = run(tmp_path, ["--manifest", str(manifest)], capsys)
    assert code == 1
    ok, failing = checks["lz4:roundtrip"], checks["broken:api"]
    assert (ok["status"], ok["reason"], ok["metrics"]) == ("pass", "lz4 ok", {"exit": 0})
    assert "output" not in ok
    assert failing["status"] == "fail"
    assert failing["reason"] == "exit 3: line 29 | line 30 | boom: wrong value"
    assert failing["output"][-1] == "boom: wrong value"
    assert len(failing["output"]) == checks_recipes.TAIL_LINES
    assert failing["metrics"] == {"exit": 3}
    assert "FAILED: broken:api" in out
    assert list(checks)[-3:] == ["broken:api", "lz4:roundtrip", "no-compile"]
    assert checks["no-compile"]["status"] == "pass"


def test_commands_run_with_bash_in_this_python_in_a_fresh_temp_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    no_device(monkeypatch)
    probe = ("python -c 'import os, sys; print(sys.executable, os.getcwd(), "
             "os.listdir(\".\"), os.environ[\"FLYDSL_RUNTIME_RUN_ONLY\"])' > "
             f"{tmp_path}/seen.txt; [[ -n $BASH_VERSION ]]")
    manifest = manifest_file(tmp_path, {"c": [{"name": "env", "run": probe, "gpu": False}]})
    code, _, checks = run(tmp_path, ["--manifest", str(manifest)], capsys)
    assert code == 0, checks["c:env"]
    exe, cwd, listing, run_only = (tmp_path / "seen.txt").read_text().split(" ", 3)
    assert Path(exe).parent == Path(sys.executable).parent  # the suite's environment first
    assert Path(cwd).name.startswith("smoke-check-") and not Path(cwd).exists()
    assert listing == "[]"
    assert run_only.strip() == "1"


@pytest.mark.parametrize("device,reason,nodes,runs", [
    (None, "no GPU visible", ("/dev/kfd",), False),  # torch says no GPU: trusted
    (None, NO_TORCH, (), False),
    (None, NO_TORCH, ("/dev/kfd",), True),  # no torch to ask; the driver's node is there
    ("cpu", "", ("/dev/kfd",), False),
    ("cuda", "", (), True),
])
def test_gpu_checks_run_only_where_there_is_a_gpu(
        device: str | None, reason: str, nodes: tuple[str, ...], runs: bool,
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "detect_device", lambda requested: (device, reason))
    monkeypatch.setattr(checks_recipes, "present_gpu_nodes", lambda: nodes)
    manifest = manifest_file(tmp_path, {"hipsaxpy": [
        {"name": "load", "run": "echo loaded", "gpu": False},
        {"name": "saxpy", "run": "echo ran on the GPU", "gpu": True}]})
    code, out, checks = run(tmp_path, ["--manifest", str(manifest),
                                       "--only", "hipsaxpy"], capsys)
    assert code == 0
    assert list(checks) == ["hipsaxpy:load", "hipsaxpy:saxpy"]
    load, saxpy = checks["hipsaxpy:load"], checks["hipsaxpy:saxpy"]
    assert (load["status"], load["gpu"]) == ("pass", False)
    if runs:
        assert (saxpy["status"], saxpy["reason"], saxpy["gpu"]) == (
            "pass", "ran on the GPU", True)
    else:
        assert saxpy["status"] == "skip" and saxpy["gpu"] is False
        assert saxpy["reason"].startswith("needs a GPU: ")
        assert "SKIP" in next(line for line in out.splitlines()
                              if line.startswith("hipsaxpy:saxpy"))


def test_gpu_check_without_gpu_fails_under_require_gpu(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    no_device(monkeypatch, NO_TORCH)
    manifest = manifest_file(tmp_path, {"h": [{"name": "k", "run": "true", "gpu": True}]})
    code, _, checks = run(tmp_path, ["--manifest", str(manifest), "--only", "h:k",
                                     "--require-gpu"], capsys)
    assert code == 1
    assert checks["h:k"]["status"] == "fail"
    assert checks["h:k"]["reason"].startswith("--require-gpu: needs a GPU: torch not installed")


def test_a_command_that_hangs_times_out(tmp_path: Path) -> None:
    fn = make_check_fn(RecipeCheck("c", "slow", "echo started; sleep 30"), timeout=0.5)
    result = fn(Context(device=None))
    assert result.status == "fail"
    assert result.reason == "timed out after 0.5s: started"


def test_list_and_only_know_the_recipe_checks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = manifest_file(tmp_path, {"scmext": [{"name": "api", "run": "python -c 1\n"
                                                    "echo more", "gpu": False}]})
    assert cli.main(["--manifest", str(manifest), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed[-2:]] == ["scmext:api", "no-compile"]
    assert listed[-2].endswith("python -c 1")
    assert cli.main(["--manifest", str(manifest), "--only", "scmext:apo"]) == 2
    assert "did you mean 'scmext:api'?" in capsys.readouterr().err


@pytest.mark.parametrize("smoke,message", [
    ("x", "'smoke' must be a list"),
    ([{"name": "Bad Name", "run": "true"}], "each smoke check needs a 'name'"),
    ([{"name": "a"}], "a 'run' command"),
    ([{"name": "a", "run": "true", "gpu": "yes"}], "optionally 'gpu'"),
    ([{"name": "a", "run": "true"}, {"name": "a", "run": "false"}], "listed twice"),
])
def test_bad_smoke_entries_in_the_manifest_exit_2(
        smoke: Any, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"components": {"c": {"smoke": smoke}}}))
    assert cli.main(["--manifest", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_the_demo_recipes_declare_checks_that_can_fail() -> None:
    """Every runtime component of the demo with code of its own has a check of its own."""

    _, recipes = load(types.Inputs(recipes_dir=REPO / "demo" / "recipes"))
    names = {n: [c.name for c in r.smoke] for n, r in recipes.items() if r.smoke}
    assert names == {"lz4": ["roundtrip"], "msgpack": ["roundtrip"],
                     "msgpack-numpy": ["roundtrip"], "scmext": ["api"],
                     "hipsaxpy": ["load", "saxpy"], "hipblend": ["load", "axpby"],
                     "jitdemo": ["kernel"]}
    gpu = {f"{n}:{c.name}" for n, r in recipes.items() for c in r.smoke if c.gpu}
    assert gpu == {"hipsaxpy:saxpy", "hipblend:axpby"}
    for recipe in recipes.values():
        for check in recipe.smoke:
            assert "assert" in check.run, f"{recipe.name}:{check.name} can never fail"


def test_command_env_puts_the_venv_first() -> None:
    env = checks_recipes.command_env({"PATH": f"/usr/bin{os.pathsep}/bin"})
    first = env["PATH"].split(os.pathsep)[0]
    assert first == (os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix
                     else os.path.dirname(sys.executable))
    assert env["PATH"].endswith(f"/usr/bin{os.pathsep}/bin")
