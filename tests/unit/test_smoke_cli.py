"""The smoke CLI: exit codes, the JSON report, usage errors, compare(), and the layout
inside an image (only the package folder, run as ``python -m smoke``)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wheelforge.smoke import cli, report
from wheelforge.smoke.checks_device import check_device
from wheelforge.smoke.report import CheckResult, Outcome, compare, format_compare


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _cuda_available() -> bool:
    if not _has_torch():
        return False
    import torch

    return bool(torch.cuda.is_available())


REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "wheelforge" / "smoke"
GPU_CHECKS = ("gemm", "copy", "triton", "aiter", "model", "allreduce")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], **overrides: Any
            ) -> tuple[int, str, str]:
    code = cli.main(argv, overrides=overrides)
    out, err = capsys.readouterr()
    return code, out, err


NO_GPU_TORCH = SimpleNamespace(
    cuda=SimpleNamespace(is_available=lambda: False, device_count=lambda: 0),
    version=SimpleNamespace(hip=None, cuda=None))
DEVICE_WITHOUT_GPU = functools.partial(check_device, torch_module=NO_GPU_TORCH)


def no_gpu_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend there is no GPU, whatever this machine has."""
    monkeypatch.setattr(cli, "detect_device", lambda requested: (None, "no GPU visible"))


@pytest.fixture
def no_default_manifest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli.inputs, "DEFAULT_MANIFEST", str(tmp_path / "absent.json"))


def python(args: list[str], cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env, check=False)


# --- exit codes and the report ------------------------------------------------------

@pytest.mark.usefixtures("no_default_manifest")
def test_without_gpu_all_gpu_checks_skip_and_exit_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    no_gpu_visible(monkeypatch)
    monkeypatch.setenv("SMOKE_IMAGE_DIGEST", "sha256:" + "ab" * 32)
    report_file = tmp_path / "out" / "report.json"
    code, out, _ = run_cli(["--report", str(report_file)], capsys, device=DEVICE_WITHOUT_GPU)
    assert code == 0, out
    data = json.loads(report_file.read_text())
    assert set(data) == {"schema", "host", "image_digest", "checks", "passed", "gpu_checks"}
    assert data["schema"] == 1 and data["passed"] is True
    assert data["gpu_checks"] == 0  # no GPU: nothing here is evidence for promotion
    assert data["image_digest"] == "sha256:" + "ab" * 32
    assert {"python", "torch", "hip", "cuda", "gpus"} <= set(data["host"])
    checks = {c["name"]: c for c in data["checks"]}
    assert list(checks) == [c.name for c in cli.CHECKS]
    for check in checks.values():
        assert set(check) == {"name", "status", "reason", "seconds", "metrics", "gpu"}
        assert isinstance(check["seconds"], float) and isinstance(check["metrics"], dict)
        assert check["gpu"] is False
    for name in ("device", *GPU_CHECKS):
        assert (checks[name]["status"], checks[name]["reason"]) == ("skip", "no GPU visible")
    assert [p.name for p in report_file.parent.iterdir()] == ["report.json"]  # no temp left


def ran(name: str) -> Any:
    """A check function that passes without touching a device (the suite's device is faked)."""
    return lambda ctx: report.passed(f"{name} ran on {ctx.device}")


@pytest.mark.usefixtures("no_default_manifest")
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_only_gpu_checks_that_ran_on_a_gpu_are_marked(
        device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The report marks a check as run on a GPU from its declaration (Check.gpu), the
    suite's device and its status; gpu_checks counts exactly those."""
    monkeypatch.setattr(cli, "detect_device", lambda requested: (device, ""))
    report_file = tmp_path / "report.json"
    code, out, _ = run_cli(
        ["--only", "device,gemm,copy,manifest,flydsl", "--report", str(report_file)], capsys,
        device=ran("device"), gemm=lambda ctx: report.failed("wrong numbers"),
        copy=lambda ctx: report.skipped("needs 2 GPUs"), manifest=ran("manifest"),
        flydsl=ran("flydsl"))
    assert code == 1, out
    data = json.loads(report_file.read_text())
    marked = {c["name"]: c["gpu"] for c in data["checks"]}
    on_gpu = device == "cuda"
    assert marked == {"device": on_gpu, "gemm": on_gpu, "copy": False, "manifest": False,
                      "flydsl": False}
    assert data["gpu_checks"] == (2 if on_gpu else 0)
    assert report.gpu_check_names(data) == (["device", "gemm"] if on_gpu else [])
    assert {c.name for c in cli.CHECKS if c.gpu} == {
        "device", "gemm", "copy", "triton", "aiter", "model", "real_model", "allreduce"}


@pytest.mark.usefixtures("no_default_manifest")
def test_require_gpu_without_gpu_exits_1(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    no_gpu_visible(monkeypatch)
    code, out, _ = run_cli(["--require-gpu"], capsys, device=DEVICE_WITHOUT_GPU)
    assert code == 1
    assert "--require-gpu: no GPU visible" in out
    assert "FAILED: device" in out


@pytest.mark.skipif(_cuda_available(), reason="a GPU is visible here")
def test_require_gpu_on_this_cpu_machine_exits_1() -> None:
    proc = python(["-m", "wheelforge.smoke", "--require-gpu", "--only", "device,gemm"], REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reason = "torch not installed" if not _has_torch() else "no GPU visible"
    assert f"--require-gpu: {reason}" in proc.stdout


def test_require_gpu_without_torch_exits_1(tmp_path: Path) -> None:
    """torch missing: GPU checks skip with 'torch not installed'; --require-gpu fails."""
    script = ("import sys; sys.modules['torch'] = None\n"
              "from wheelforge.smoke.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    plain = python(["-c", script, "--report", str(tmp_path / "r.json")], REPO)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    checks = {c["name"]: c for c in json.loads((tmp_path / "r.json").read_text())["checks"]}
    assert checks["gemm"]["reason"] == "torch not installed"
    assert checks["model"]["status"] == "skip"
    strict = python(["-c", script, "--require-gpu"], REPO)
    assert strict.returncode == 1
    assert "--require-gpu: torch not installed" in strict.stdout
    assert "Traceback" not in strict.stdout + strict.stderr


@pytest.mark.usefixtures("no_default_manifest")
def test_a_crashing_check_fails_without_stopping_the_suite(
        capsys: pytest.CaptureFixture[str]) -> None:
    def crash(ctx: Any) -> Outcome:
        raise RuntimeError("HIP error: invalid device function\nmore")

    code, out, _ = run_cli(["--only", "flydsl,atom"], capsys, flydsl=crash)
    assert code == 1
    assert "RuntimeError: HIP error: invalid device function more" in out
    assert "atom" in out


@pytest.mark.usefixtures("no_default_manifest")
def test_perf_only_selects_device_and_perf_checks(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    no_gpu_visible(monkeypatch)
    code, out, _ = run_cli(["--perf-only"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip()][:-1]
    assert names == ["device", "gemm", "copy", "model", "real_model"]


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--list"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [c.name for c in cli.CHECKS]


# --- usage errors: one line on stderr, exit 2 ---------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--only", "gemmm"], "no check named 'gemmm' (did you mean 'gemm'?)"),
    (["--archs", "sm_90"], "--archs 'sm_90'"),
    (["--manifest", "/nonexistent/manifest.json"], "cannot read manifest"),
    (["--model", "m", "--golden", "/nonexistent/golden.json"], "cannot read golden file"),
    (["--golden", "g.json"], "need --model"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_usage_errors_exit_2(argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("content,message", [
    ("{not json", "is not valid JSON"),
    ('{"components": []}', "expected an object with a 'components' object"),
    ('{"components": {"a": {"imports": "x"}}}', "'imports' must be a list"),
    ('{"components": {"a": {"wheels": [{"version": "1"}]}}}', "needs 'distribution'"),
])
def test_bad_manifest_exits_2(tmp_path: Path, content: str, message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    code, _, err = run_cli(["--manifest", str(path)], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_bad_golden_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "golden.json"
    path.write_text('[{"prompt": "a"}]')
    code, _, err = run_cli(["--model", "m", "--golden", str(path)], capsys)
    assert code == 2 and "expected a non-empty JSON list" in err


def test_usage_error_from_the_command_line_has_no_traceback() -> None:
    proc = python(["-m", "wheelforge.smoke", "--archs", "gfx942;nvidia"], REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("smoke: error: --archs")
    assert "Traceback" not in proc.stderr


# --- report helpers -----------------------------------------------------------------

def fake_report(tflops: float, gbps: float) -> dict[str, Any]:
    results = [
        CheckResult("gemm", "pass", "", 1.0, {"peak_tflops": tflops, "rel_error": 1e-3,
                                              "o_m1_of_peak": 0.5}),
        CheckResult("copy", "pass", "", 1.0, {"read_plus_write_gbps": gbps, "bytes": 1 << 30}),
        CheckResult("model", "skip", "no GPU visible", 0.0, {}),
    ]
    return report.build_report({"python": "3.12"}, results, None)


def test_compare_gives_ratios_of_perf_metrics_present_in_both() -> None:
    a, b = fake_report(800.0, 3000.0), fake_report(600.0, 3300.0)
    b["checks"][1]["metrics"].pop("read_plus_write_gbps")
    rows = compare(a, b)
    assert rows == [("gemm.peak_tflops", 800.0, 600.0, 0.75),
                    ("gemm.o_m1_of_peak", 0.5, 0.5, 1.0)]
    table = format_compare(rows, "old", "new")
    assert "gemm.peak_tflops" in table and "0.750" in table
    zero = compare(fake_report(0.0, 1.0), fake_report(1.0, 1.0))
    assert zero[0][3] != zero[0][3]  # NaN where a is 0


def test_format_table_and_passed_flag() -> None:
    results = [CheckResult("gemm", "pass", "ok", 1.25, {"peak_tflops": 789.123},
                           ("peak_tflops",)),
               CheckResult("copy", "fail", "corrupted", 0.5, {})]
    table = report.format_table(results)
    assert "peak_tflops=789" in table and "FAILED: copy" in table
    assert report.build_report({}, results, None)["passed"] is False


# --- the layout inside an image -----------------------------------------------------

def test_runs_as_python_dash_m_smoke_from_a_bare_package_folder(tmp_path: Path) -> None:
    """Only wheelforge/smoke, mounted as /opt/forge/smoke: no other wheelforge module is
    importable, nothing is written next to the code."""
    forge = tmp_path / "forge"
    shutil.copytree(PACKAGE, forge / "smoke", ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.name for p in (forge / "smoke").iterdir())
    env = {**os.environ, "PYTHONPATH": str(forge), "PYTHONDONTWRITEBYTECODE": "1"}
    work = tmp_path / "cwd"
    work.mkdir()
    listed = python(["-m", "smoke", "--list"], work, env)
    assert listed.returncode == 0, listed.stderr
    assert "allreduce" in listed.stdout
    code = ("import sys, smoke.cli, smoke.report; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'triton', 'wheelforge', 'transformers')); "
            "print(bad); sys.exit(1 if bad else 0)")
    hygiene = python(["-c", code], work, env)
    assert hygiene.returncode == 0, hygiene.stdout + hygiene.stderr
    if _has_torch():
        run = python(["-m", "smoke", "--device", "cpu", "--only", "model,allreduce"], work,
                     env)
        assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in (forge / "smoke").iterdir()) == before


def test_only_relative_imports_inside_the_package() -> None:
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert "import wheelforge" not in text and "from wheelforge" not in text, path




def test_installed_but_broken_torch_fails_the_checks() -> None:
    """torch present but its native library missing: a failure, not a skip."""
    script = ("import sys, importlib.abc\n"
              "class Broken(importlib.abc.MetaPathFinder):\n"
              "    def find_spec(self, name, path, target=None):\n"
              "        if name == 'torch':\n"
              "            raise OSError('libamdhip64.so.7: cannot open shared object file')\n"
              "sys.meta_path.insert(0, Broken())\n"
              "from wheelforge.smoke.cli import main\n"
              "sys.exit(main(['--only', 'device,gemm']))\n")
    proc = python(["-c", script], REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("OSError: libamdhip64.so.7") == 2
    assert "Traceback" not in proc.stdout + proc.stderr
