"""Every smoke check can fail: a planted wrong result makes it 'fail' and the CLI exit 1.

Runs on the CPU. GPU checks are exercised with ``--device cpu`` (Context(device="cpu")),
with their compute functions replaced by planted wrong ones.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wheelforge.smoke import cli
from wheelforge.smoke.checks_components import (
    check_aiter,
    check_manifest,
    check_module,
    reference_rmsnorm,
)
from wheelforge.smoke.checks_device import check_device
from wheelforge.smoke.checks_dist import (
    check_allreduce,
    launch_workers,
    verify_allreduce,
)
from wheelforge.smoke.checks_model import check_model, compare_tokens
from wheelforge.smoke.checks_realmodel import (
    Completion,
    check_real_model,
    compare_golden,
    parse_atom_output,
)
from wheelforge.smoke.checks_torch import check_copy, check_gemm
from wheelforge.smoke.checks_triton import KernelCase, check_triton
from wheelforge.smoke.context import Context

CPU = Context(device="cpu", no_device_reason="", quick=True)
SMALL_GEMM = {"projections": (("o", 64, 64),), "ms": (1, 8), "peak_n": 64}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], **overrides: Any
            ) -> tuple[int, str, str]:
    code = cli.main(argv, overrides=overrides)
    out, err = capsys.readouterr()
    return code, out, err


def status_of(out: str, name: str) -> str:
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            return fields[1]
    raise AssertionError(f"{name} not in table:\n{out}")


# --- device -------------------------------------------------------------------------

def fake_torch(arch: str | None = "gfx942:sramecc+:xnack-", count: int = 1,
               hip: str | None = "7.2.0") -> SimpleNamespace:
    props = SimpleNamespace(name="AMD Instinct MI300X", gcnArchName=arch,
                            total_memory=192 * 2**30, major=9, minor=4)
    cuda = SimpleNamespace(is_available=lambda: count > 0, device_count=lambda: count,
                           get_device_properties=lambda i: props)
    return SimpleNamespace(cuda=cuda, version=SimpleNamespace(hip=hip, cuda=None))


def test_device_arch_mismatch_fails() -> None:
    ctx = Context(archs=("gfx942",))
    outcome = check_device(ctx, torch_module=fake_torch("gfx90a:sramecc+:xnack-", count=2))
    assert outcome.status == "fail"
    assert "GPU 0 is gfx90a" in outcome.reason
    assert "invalid device function" in outcome.reason


def test_device_arch_match_passes() -> None:
    ctx = Context(archs=("gfx942", "gfx950"))
    outcome = check_device(ctx, torch_module=fake_torch("gfx942:sramecc+:xnack-"))
    assert outcome.status == "pass", outcome.reason
    assert outcome.metrics["archs"] == "gfx942"


def test_device_without_arch_constraint_passes() -> None:
    assert check_device(Context(), torch_module=fake_torch("gfx90a")).status == "pass"


def test_device_arch_mismatch_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    planted = functools.partial(check_device, torch_module=fake_torch("gfx90a:xnack-"))
    code, out, _ = run_cli(["--only", "device", "--archs", "gfx942"], capsys, device=planted)
    assert code == 1
    assert status_of(out, "device") == "FAIL"


def test_device_no_gpu_skips_or_fails_with_require_gpu() -> None:
    no_gpu = fake_torch(count=0)
    assert check_device(Context(), torch_module=no_gpu).status == "skip"
    outcome = check_device(Context(require_gpu=True), torch_module=no_gpu)
    assert outcome.status == "fail"
    assert outcome.reason == "--require-gpu: no GPU visible"


# --- gemm and copy ------------------------------------------------------------------

def test_gemm_passes_on_cpu() -> None:
    pytest.importorskip("torch")
    outcome = check_gemm(CPU, **SMALL_GEMM)
    assert outcome.status == "pass", outcome.reason
    assert outcome.metrics["rel_error"] < 1e-2
    assert outcome.metrics["o_m8_tflops"] > 0
    assert "o_m8_of_peak" in outcome.metrics


def wrong_matmul(a: Any, b: Any) -> Any:
    out = a @ b
    out[0, 0] += 1000.0  # one wrong element
    return out


def test_gemm_wrong_product_fails(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    outcome = check_gemm(CPU, matmul=wrong_matmul, **SMALL_GEMM)
    assert outcome.status == "fail"
    assert "relative error" in outcome.reason
    planted = functools.partial(check_gemm, matmul=wrong_matmul, **SMALL_GEMM)
    code, out, _ = run_cli(["--device", "cpu", "--only", "gemm"], capsys, gemm=planted)
    assert code == 1
    assert status_of(out, "gemm") == "FAIL"


def test_gemm_wrong_shape_fails() -> None:
    pytest.importorskip("torch")
    outcome = check_gemm(CPU, matmul=lambda a, b: (a @ b)[:, :-1], **SMALL_GEMM)
    assert outcome.status == "fail"
    assert "shape" in outcome.reason


def corrupt_copy(dst: Any, src: Any) -> Any:
    dst.copy_(src)
    dst[12345] = -1
    return dst


def test_copy_passes_and_corruption_fails(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    good = check_copy(CPU, nbytes=1 << 20)
    assert good.status == "pass", good.reason
    assert good.metrics["read_plus_write_gbps"] == pytest.approx(
        2 * good.metrics["one_way_gbps"])
    bad = check_copy(CPU, copy=corrupt_copy, nbytes=1 << 20)
    assert bad.status == "fail"
    assert "corrupted 1 of" in bad.reason
    planted = functools.partial(check_copy, copy=corrupt_copy, nbytes=1 << 20)
    code, _, _ = run_cli(["--device", "cpu", "--only", "copy"], capsys, copy=planted)
    assert code == 1


# --- triton -----------------------------------------------------------------------

def softmax_cases(kernel: Any) -> list[KernelCase]:
    import torch

    return [KernelCase("row_softmax", lambda: (torch.randn(4, 10),), kernel,
                       lambda x: torch.softmax(x, dim=-1))]


def test_triton_wrong_kernel_output_fails(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    assert check_triton(CPU, cases=softmax_cases(lambda x: torch.softmax(x, -1))
                        ).status == "pass"
    wrong = softmax_cases(lambda x: torch.softmax(x, dim=0))  # softmax over the wrong axis
    outcome = check_triton(CPU, cases=wrong)
    assert outcome.status == "fail"
    assert "row_softmax: max abs error" in outcome.reason
    planted = functools.partial(check_triton, cases=wrong)
    code, _, _ = run_cli(["--device", "cpu", "--only", "triton"], capsys, triton=planted)
    assert code == 1


def test_triton_skips_without_gpu() -> None:
    pytest.importorskip("torch")
    outcome = cli.run_check(cli.Check("triton", check_triton, ""), Context())
    assert (outcome.status, outcome.reason) == ("skip", "no GPU visible")


# --- components ---------------------------------------------------------------------

def manifest(imports: list[str], dist: str, version: str) -> dict[str, Any]:
    return {"cell": "stable-rocm7.2-py3.12-gfx942-ckfree", "archs": ["gfx942"],
            "components": {"demo": {"imports": imports, "wheels": [
                {"distribution": dist, "version": version, "file": f"{dist}-{version}.whl",
                 "sha256": "0" * 64}]}}}


def test_manifest_passes_when_everything_matches() -> None:
    version = pytest.__version__
    ctx = Context(manifest=manifest(["json", "pytest"], "pytest", version))
    outcome = check_manifest(ctx)
    assert outcome.status == "pass", outcome.reason
    assert outcome.metrics["cell"] == "stable-rocm7.2-py3.12-gfx942-ckfree"


def test_manifest_missing_import_and_version_mismatch_fail() -> None:
    ctx = Context(manifest=manifest(["json", "no_such_module_xyz"], "pytest", "0.0.1"))
    outcome = check_manifest(ctx)
    assert outcome.status == "fail"
    assert "import no_such_module_xyz failed" in outcome.reason
    assert f"pytest {pytest.__version__} installed, manifest has 0.0.1" in outcome.reason
    missing = check_manifest(Context(manifest=manifest([], "no-such-dist-xyz", "1.0")))
    assert "no-such-dist-xyz not installed" in missing.reason


def test_manifest_injected_importer_and_versions() -> None:
    def importer(name: str) -> None:
        raise ImportError("libamdhip64.so.7: cannot open shared object file")

    ctx = Context(manifest=manifest(["aiter"], "amd-aiter", "0.1.12"))
    outcome = check_manifest(ctx, importer=importer, version_of=lambda d: "0.1.12")
    assert outcome.status == "fail"
    assert "libamdhip64.so.7" in outcome.reason


@pytest.mark.parametrize("imports,version", [(["no_such_module_xyz"], None), ([], "0.0.1")])
def test_manifest_failures_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  imports: list[str], version: str | None) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest(imports, "pytest", version or pytest.__version__)))
    code, out, _ = run_cli(["--manifest", str(path), "--only", "manifest"], capsys)
    assert code == 1
    assert status_of(out, "manifest") == "FAIL"


def test_manifest_archs_are_the_default_for_device(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest([], "pytest", pytest.__version__)))
    planted = functools.partial(check_device, torch_module=fake_torch("gfx950"))
    code, out, _ = run_cli(["--manifest", str(path), "--only", "device,manifest"], capsys,
                           device=planted)
    assert code == 1
    assert "gfx950" in out and "gfx942" in out


def test_component_import_failure_fails_and_absence_skips() -> None:
    def broken(name: str) -> None:
        raise OSError("libamdhip64.so.7: cannot open shared object file")

    present = check_module(CPU, "mori", importer=broken, find_spec=lambda n: object())
    assert present.status == "fail"
    assert "installed but import failed" in present.reason
    absent = check_module(CPU, "mori", find_spec=lambda n: None)
    assert (absent.status, absent.reason) == ("skip", "mori not installed")
    ok = check_module(CPU, "json", importer=lambda n: SimpleNamespace(__version__="9.9"),
                      find_spec=lambda n: object())
    assert ok.status == "pass" and ok.metrics["version"] == "9.9"


def test_aiter_rmsnorm_planted_wrong_fails(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")

    def good(x: Any, w: Any, eps: float) -> Any:
        return reference_rmsnorm(x, w, eps).to(x.dtype)

    def wrong(x: Any, w: Any, eps: float) -> Any:
        return reference_rmsnorm(x, w, 1.0).to(x.dtype)  # eps far too large

    assert check_aiter(CPU, rmsnorm=good).status == "pass"
    outcome = check_aiter(CPU, rmsnorm=wrong)
    assert outcome.status == "fail"
    assert "AITER rmsnorm relative error" in outcome.reason
    code, _, _ = run_cli(["--device", "cpu", "--only", "aiter"], capsys,
                         aiter=functools.partial(check_aiter, rmsnorm=wrong))
    assert code == 1


# --- model --------------------------------------------------------------------------

def test_model_agrees_on_cpu_float16() -> None:
    pytest.importorskip("torch")
    outcome = check_model(CPU)
    assert outcome.status == "pass", outcome.reason
    assert outcome.metrics["tokens_compared"] == 32
    assert outcome.metrics["decode_tokens_per_s"] > 0
    assert outcome.metrics["prefill_tokens_per_s"] > 0


def perturb_weights(weights: dict[str, Any]) -> dict[str, Any]:
    """Scale one layer's attention output by 1.5: a subtly wrong model."""
    return weights | {"1.o": weights["1.o"] * 1.5}


def test_model_perturbed_weights_fail(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    outcome = check_model(CPU, perturb=perturb_weights)
    assert outcome.status == "fail"
    assert "first-step logits relative error" in outcome.reason
    assert "differs" in outcome.reason
    code, out, _ = run_cli(["--device", "cpu", "--only", "model"], capsys,
                           model=functools.partial(check_model, perturb=perturb_weights))
    assert code == 1
    assert status_of(out, "model") == "FAIL"


def test_compare_tokens_stops_at_near_tie() -> None:
    ref, margins = [5, 6, 7, 8], [1.0, 1.0, 0.01, 1.0]
    tie = compare_tokens(ref, margins, [5, 6, 9, 9], margin=0.05)
    assert (tie.compared, tie.mismatch, tie.tie) == (2, None, 2)
    mismatch = compare_tokens(ref, margins, [5, 4, 7, 8], margin=0.05)
    assert (mismatch.compared, mismatch.mismatch) == (1, 1)
    assert compare_tokens(ref, [1.0] * 4, ref, 0.05).compared == 4
    assert compare_tokens(ref, [1.0] * 4, ref[:2], 0.05).mismatch == 2


# --- real model ---------------------------------------------------------------------

def fake_generate(completions: dict[str, str]) -> Any:
    def generate(ctx: Context, model: str, prompts: list[str]) -> list[Completion]:
        return [Completion(p, completions.get(p, "?"), 4, 0.5) for p in prompts]
    return generate


def test_real_model_golden_match_and_mismatch(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps([{"prompt": "Hi", "completion": " there"},
                                  {"prompt": "2+2=", "completion": "4"}]))
    base = ["--device", "cpu", "--only", "real_model", "--model", str(tmp_path),
            "--golden", str(golden)]
    right = fake_generate({"Hi": " there", "2+2=": "4"})
    code, out, _ = run_cli(base, capsys, real_model=functools.partial(check_real_model,
                                                                      generate=right))
    assert code == 0, out
    wrong = fake_generate({"Hi": " there", "2+2=": "5"})
    code, out, _ = run_cli(base, capsys, real_model=functools.partial(check_real_model,
                                                                      generate=wrong))
    assert code == 1
    assert "1/2 completions differ from golden" in out


def test_real_model_writes_golden(tmp_path: Path) -> None:
    out = tmp_path / "golden.json"
    ctx = Context(device="cpu", model="m", write_golden=str(out))
    outcome = check_real_model(ctx, generate=fake_generate({}))
    assert outcome.status == "pass"
    assert outcome.metrics["decode_tokens_per_s"] == pytest.approx(8.0)
    written = json.loads(out.read_text())
    assert len(written) == 4 and set(written[0]) == {"prompt", "completion"}


def test_real_model_skips_without_model() -> None:
    assert check_real_model(CPU).reason == "no --model given"


def test_golden_compare_and_atom_output_parsing() -> None:
    text = ("noise\nPrompt: 'intro\\nduce'\nCompletion: 'I am ATOM.'\n"
            "Prompt: \"b\"\nCompletion: 'x'\n")
    parsed = parse_atom_output(text)
    assert [(c.prompt, c.completion) for c in parsed] == [("intro\nduce", "I am ATOM."),
                                                          ("b", "x")]
    problems = compare_golden(parsed, [{"prompt": "intro\nduce", "completion": "I am ATOM."},
                                       {"prompt": "c", "completion": "y"}])
    assert problems == ["prompt 'c': no completion"]


# --- all-reduce ---------------------------------------------------------------------

def rank_result(rank: int, value: float, big: float) -> dict[str, Any]:
    return {"rank": rank, "min": value, "max": value, "big_min": big, "big_max": big,
            "busbw_gbps": 10.0, "algbw_gbps": 10.0}


def test_verify_allreduce_detects_wrong_sums() -> None:
    assert verify_allreduce([rank_result(0, 3.0, 2.0), rank_result(1, 3.0, 2.0)], 2) == []
    wrong = verify_allreduce([rank_result(0, 3.0, 2.0), rank_result(1, 2.0, 2.0)], 2)
    assert wrong == ["rank 1: sum in [2.0, 2.0], want 3"]
    assert verify_allreduce([rank_result(0, 3.0, 2.0)], 2)[0].startswith("results from ranks")
    assert "large sum" in verify_allreduce([rank_result(0, 3.0, 1.0),
                                            rank_result(1, 3.0, 2.0)], 2)[0]


def test_allreduce_wrong_sum_fails(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")

    def launch(world: int, backend: str, device: str, nbytes: int, timeout: float
               ) -> list[dict[str, Any]]:
        return [rank_result(r, 2.0, float(world)) for r in range(world)]  # should be 3

    outcome = check_allreduce(CPU, launch=launch)
    assert outcome.status == "fail"
    assert "wrong sums" in outcome.reason
    code, _, _ = run_cli(["--device", "cpu", "--only", "allreduce"], capsys,
                         allreduce=functools.partial(check_allreduce, launch=launch))
    assert code == 1


def test_allreduce_real_workers_on_cpu() -> None:
    """Two real worker processes over gloo: the launch, rendezvous and parsing work."""
    pytest.importorskip("torch")
    outcome = check_allreduce(CPU)
    assert outcome.status == "pass", outcome.reason
    assert outcome.metrics["world"] == 2 and outcome.metrics["busbw_gbps"] > 0


def test_allreduce_workers_are_bounded_in_time() -> None:
    pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="did not finish within"):
        launch_workers(2, "gloo", "cpu", 1 << 20, timeout=0.2)
