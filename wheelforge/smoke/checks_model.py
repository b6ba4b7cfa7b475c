"""model: a tiny Llama-style transformer decodes on the GPU as it does in float32 on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .checks_torch import relative_error
from .context import Context
from .report import Outcome, failed, passed
from .timing import time_op
from .tinylm import TinyConfig, TinyLM, init_weights

SEED = 4  # a seed whose float32 greedy run has no near-tie in 32 steps
PROMPT = tuple((7 * i + 3) % 1000 for i in range(16))
NEW_TOKENS = 32
TIE_MARGIN = 0.05  # top-1 minus top-2 logit below which a token may legitimately flip
LOGITS_BOUND = {"float16": 1e-2, "bfloat16": 5e-2, "float32": 1e-4}
PREFILL_TOKENS = 512
QUICK_PREFILL_TOKENS = 128

Weights = dict[str, Any]


@dataclass(frozen=True)
class TokenComparison:
    """How far greedy tokens agree with the reference run."""

    compared: int  # positions compared (all agree)
    mismatch: int | None  # first position where they differ
    tie: int | None  # position where the comparison stopped at a near-tie

    def describe(self, total: int, margins: Sequence[float], margin: float) -> str:
        if self.mismatch is not None:
            return f"token {self.mismatch} differs"
        if self.tie is not None:
            return (f"{self.compared}/{total} tokens agree; stopped at position {self.tie}: "
                    f"reference top-2 logits differ by {margins[self.tie]:.3g} < {margin:g}")
        return f"{self.compared}/{total} tokens agree"


def compare_tokens(ref_tokens: Sequence[int], ref_margins: Sequence[float],
                   got_tokens: Sequence[int], margin: float) -> TokenComparison:
    """Compare greedy tokens position by position, stopping at the first position
    where the reference's top-2 logits are closer than ``margin`` (a tie may flip
    either way, and everything after it then legitimately differs)."""
    for i, want in enumerate(ref_tokens):
        if ref_margins[i] < margin:
            return TokenComparison(i, None, i)
        if i >= len(got_tokens) or got_tokens[i] != want:
            return TokenComparison(i, i, None)
    return TokenComparison(len(ref_tokens), None, None)


def check_model(ctx: Context, perturb: Callable[[Weights], Weights] | None = None,
                cfg: TinyConfig | None = None, dtype: str = "float16", seed: int = SEED,
                new_tokens: int = NEW_TOKENS, margin: float = TIE_MARGIN) -> Outcome:
    """Proves a small transformer (RMSNorm, RoPE, GQA attention, SwiGLU, KV cache) gives
    the same greedy tokens and first-step logits on the device as float32 on the CPU;
    measures prefill and decode tokens/s.

    float16 by default: its finer mantissa keeps greedy decisions comparable with the
    float32 reference (bf16 numerics are covered by the gemm check). With
    ``--device cpu`` the device side is the CPU in float16. ``perturb`` alters the
    device side's weights (tests plant a wrong model).
    """
    torch = ctx.torch()
    device = ctx.gpu_device()
    cfg = cfg or TinyConfig()
    weights = init_weights(torch, cfg, seed)
    reference = TinyLM(torch, cfg, weights, "cpu", torch.float32).generate(list(PROMPT),
                                                                           new_tokens)
    device_weights = perturb(dict(weights)) if perturb else weights
    model = TinyLM(torch, cfg, device_weights, device, getattr(torch, dtype))
    model.generate(list(PROMPT), 2)  # warm-up: kernels load and compile
    run = model.generate(list(PROMPT), new_tokens)

    cmp = compare_tokens(reference.tokens, reference.margins, run.tokens, margin)
    logits_error = relative_error(run.first_logits, reference.first_logits)
    bound = LOGITS_BOUND.get(dtype, 5e-2)
    metrics: dict[str, Any] = {
        "dtype": dtype,
        "tokens_compared": cmp.compared,
        "first_logits_rel_error": logits_error,
        "decode_tokens_per_s": (new_tokens - 1) / run.decode_seconds
        if run.decode_seconds > 0 else float("nan"),
    }
    if cmp.tie is not None:
        metrics["tie_position"] = cmp.tie
    tokens_text = cmp.describe(new_tokens, reference.margins, margin)
    problems = []
    if cmp.mismatch is not None:
        i = cmp.mismatch
        problems.append(f"greedy {tokens_text}: {device} {dtype} gave "
                        f"{list(run.tokens[max(0, i - 2):i + 3])}, CPU float32 gave "
                        f"{list(reference.tokens[max(0, i - 2):i + 3])} (from position "
                        f"{max(0, i - 2)})")
    if not logits_error <= bound:
        problems.append(f"first-step logits relative error {logits_error:.3g} > {bound:g}")
    if problems:
        return failed("; ".join(problems), metrics, ("tokens_compared",
                                                     "first_logits_rel_error"))

    prefill = QUICK_PREFILL_TOKENS if ctx.quick else PREFILL_TOKENS
    long_prompt = torch.arange(prefill, device=device) % cfg.vocab

    def prefill_once() -> Any:
        with torch.inference_mode():
            return model.forward(long_prompt, model.new_cache(prefill), 0)

    seconds = time_op(torch, device, prefill_once, warmup=2, iters=5, min_ms=0)
    metrics["prefill_tokens"] = prefill
    metrics["prefill_tokens_per_s"] = prefill / seconds if seconds > 0 else float("nan")
    return passed(f"{tokens_text}; first-step logits error {logits_error:.2e} <= {bound:g} "
                  f"({device} {dtype} vs CPU float32)", metrics,
                  ("tokens_compared", "prefill_tokens_per_s", "decode_tokens_per_s"))
