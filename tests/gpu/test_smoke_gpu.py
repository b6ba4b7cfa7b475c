"""The smoke suite on a real GPU: the whole suite passes with --require-gpu.

Runs only where a GPU is visible (marker ``gpu``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


needs_gpu = pytest.mark.skipif(_gpu_count() == 0, reason="no GPU visible")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, env=env, check=False)


@needs_gpu
def test_whole_suite_passes_with_require_gpu(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    proc = _run(["-m", "wheelforge.smoke", "--require-gpu", "--report", str(report_file)],
                REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_file.read_text())
    assert report["passed"] is True
    status = {c["name"]: c["status"] for c in report["checks"]}
    for name in ("device", "gemm", "copy", "model"):
        assert status[name] == "pass", proc.stdout
    if _importable("triton"):
        assert status["triton"] == "pass", proc.stdout
    gemm = next(c for c in report["checks"] if c["name"] == "gemm")
    assert gemm["metrics"]["peak_tflops"] > 0
    assert "gate_up_m4096_tflops" in gemm["metrics"]
    if _gpu_count() >= 2:
        assert status["allreduce"] == "pass", proc.stdout
    else:
        assert status["allreduce"] == "skip"


@needs_gpu
@pytest.mark.skipif(_gpu_count() < 2, reason="needs at least 2 GPUs")
def test_allreduce_across_all_gpus() -> None:
    proc = _run(["-m", "wheelforge.smoke", "--require-gpu", "--only", "allreduce"], REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout


@needs_gpu
def test_runs_from_a_read_only_mount_as_smoke(tmp_path: Path) -> None:
    """The layout inside an image: only the package folder, as /opt/forge/smoke."""
    forge = tmp_path / "forge"
    shutil.copytree(REPO / "wheelforge" / "smoke", forge / "smoke",
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(str(p) for p in forge.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(forge), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = _run(["-m", "smoke", "--require-gpu", "--only", "device,triton,model"], tmp_path,
                env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(str(p) for p in forge.rglob("*")) == before


@needs_gpu
def test_real_model_with_transformers_and_golden(tmp_path: Path) -> None:
    """A tiny random Llama checkpoint made here: write a golden file, then match it."""
    if not (_importable("transformers") and _importable("tokenizers")):
        pytest.skip("transformers not installed")
    model_dir = _tiny_llama(tmp_path / "tiny-llama")
    golden = tmp_path / "golden.json"
    base = ["-m", "wheelforge.smoke", "--only", "real_model", "--model", str(model_dir),
            "--model-backend", "transformers"]
    first = _run([*base, "--write-golden", str(golden)], REPO)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(json.loads(golden.read_text())) == 4
    second = _run([*base, "--golden", str(golden)], REPO)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "match golden" in second.stdout
    entries = json.loads(golden.read_text())
    entries[0]["completion"] += " planted"
    golden.write_text(json.dumps(entries))
    third = _run([*base, "--golden", str(golden)], REPO)
    assert third.returncode == 1, third.stdout + third.stderr


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _tiny_llama(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted({w for p in ("The capital of France is", "def fibonacci(n):",
                                "Water boils at a temperature of",
                                "The three primary colors are") for w in p.split()})
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {w: i + 3 for i, w in enumerate(words)}
    vocab |= {f"w{i}": len(vocab) + i for i in range(200)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path
