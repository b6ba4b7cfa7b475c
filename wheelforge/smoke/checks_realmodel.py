"""real_model: a real checkpoint generates greedily, and (with --golden) as recorded before.

Backends: ATOM (``python3 -m atom.examples.simple_inference``, in a subprocess) when
installed, else transformers with local files only. Nothing is downloaded.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .context import Context, import_optional
from .report import Outcome, Skip, failed, one_line, passed, skipped, write_json_atomic

DEFAULT_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "The three primary colors are",
)
MAX_NEW_TOKENS = 32
ATOM_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Completion:
    prompt: str
    completion: str
    new_tokens: int | None = None
    seconds: float | None = None


Generate = Callable[[Context, str, Sequence[str]], list[Completion]]


def generate_transformers(ctx: Context, model: str, prompts: Sequence[str]) -> list[Completion]:
    """Greedy completions with transformers (AutoModelForCausalLM), local files only."""
    torch = ctx.torch()
    device = ctx.gpu_device()
    transformers = import_optional("transformers")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    major = int(importlib.metadata.version("transformers").split(".")[0])
    dtype_arg = {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}
    tokenizer = transformers.AutoTokenizer.from_pretrained(model, local_files_only=True)
    lm = transformers.AutoModelForCausalLM.from_pretrained(model, local_files_only=True,
                                                           **dtype_arg)
    lm = lm.to(device=device, dtype=dtype).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id

    def run(prompt: str, new: int) -> tuple[str, int, float]:
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        ctx.synchronize()
        began = time.perf_counter()
        with torch.inference_mode():
            out = lm.generate(**inputs, max_new_tokens=new, do_sample=False,
                              pad_token_id=pad)
        ctx.synchronize()
        seconds = time.perf_counter() - began
        ids = out[0, inputs["input_ids"].shape[1]:]
        return tokenizer.decode(ids, skip_special_tokens=True), int(ids.shape[0]), seconds

    run(prompts[0], 2)  # warm-up
    results = []
    for prompt in prompts:
        text, count, seconds = run(prompt, MAX_NEW_TOKENS)
        results.append(Completion(prompt, text, count, seconds))
    return results


def parse_atom_output(text: str) -> list[Completion]:
    """Pairs of 'Prompt: ...' / 'Completion: ...' lines (values printed with repr())."""
    results, prompt = [], None
    for line in text.splitlines():
        if line.startswith("Prompt: "):
            prompt = _unrepr(line[len("Prompt: "):])
        elif line.startswith("Completion:") and prompt is not None:
            results.append(Completion(prompt, _unrepr(line[len("Completion:"):].strip())))
            prompt = None
    return results


def _unrepr(value: str) -> str:
    value = value.strip()
    if value[:1] in "'\"" and len(value) > 1:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        return parsed if isinstance(parsed, str) else value
    return value


def generate_atom(ctx: Context, model: str, prompts: Sequence[str]) -> list[Completion]:
    """ATOM's own example at temperature 0 (it uses its built-in prompts)."""
    cmd = [sys.executable, "-m", "atom.examples.simple_inference", "--model", model,
           "--temperature", "0"]
    began = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ATOM_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"ATOM simple_inference ran over {ATOM_TIMEOUT_S} s") from None
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        tail = one_line((proc.stderr or proc.stdout)[-600:])
        raise RuntimeError(f"ATOM simple_inference exited {proc.returncode}: {tail}")
    results = parse_atom_output(proc.stdout)
    if not results:
        raise RuntimeError("ATOM simple_inference printed no 'Prompt:'/'Completion:' lines")
    return [Completion(r.prompt, r.completion, None, seconds) for r in results]


def compare_golden(results: Sequence[Completion], golden: Sequence[dict[str, str]]
                   ) -> list[str]:
    """One message per golden prompt whose completion is missing or different."""
    got = {r.prompt: r.completion for r in results}
    problems = []
    for entry in golden:
        prompt, want = entry["prompt"], entry["completion"]
        if prompt not in got:
            problems.append(f"prompt {prompt[:40]!r}: no completion")
        elif got[prompt].strip() != want.strip():
            problems.append(f"prompt {prompt[:40]!r}: got {got[prompt][:60]!r}, "
                            f"golden {want[:60]!r}")
    return problems


def pick_backend(ctx: Context) -> Generate:
    backend = ctx.model_backend
    if backend == "auto":
        backend = "atom" if importlib.util.find_spec("atom") is not None else "transformers"
    return generate_atom if backend == "atom" else generate_transformers


def check_real_model(ctx: Context, generate: Generate | None = None) -> Outcome:
    """Proves a real checkpoint loads and generates greedily, and with --golden that
    each prompt's completion is the recorded one; reports decode tokens/s."""
    if not ctx.model:
        return skipped("no --model given")
    ctx.gpu_device()  # a real model needs a device (or --device cpu)
    prompts = [g["prompt"] for g in ctx.golden] if ctx.golden else list(DEFAULT_PROMPTS)
    results = (generate or pick_backend(ctx))(ctx, ctx.model, prompts)
    if not results:
        raise Skip("the backend produced no completions")
    if ctx.write_golden:
        write_json_atomic(ctx.write_golden,
                          [{"prompt": r.prompt, "completion": r.completion} for r in results])
    metrics: dict[str, Any] = {"completions": len(results)}
    tokens = sum(r.new_tokens or 0 for r in results)
    seconds = sum(r.seconds or 0.0 for r in results)
    if tokens and seconds:
        # generate() time includes each prompt's prefill; at 32 new tokens it is small.
        metrics["decode_tokens_per_s"] = tokens / seconds
    if ctx.golden:
        problems = compare_golden(results, ctx.golden)
        metrics["golden_mismatches"] = len(problems)
        if problems:
            return failed(f"{len(problems)}/{len(ctx.golden)} completions differ from golden: "
                          + "; ".join(problems), metrics, ("golden_mismatches",))
        return passed(f"{len(ctx.golden)} completions match golden", metrics,
                      ("completions", "decode_tokens_per_s"))
    note = f"; golden written to {ctx.write_golden}" if ctx.write_golden else ""
    return passed(f"{len(results)} completions generated (no --golden to compare){note}",
                  metrics, ("completions", "decode_tokens_per_s"))
