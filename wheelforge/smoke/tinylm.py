"""A tiny decoder-only transformer in plain torch, for checking a runtime end to end.

Llama-style: RMSNorm, rotary embedding, causal self-attention with grouped KV
heads (GQA), SwiGLU MLP, untied (or tied) LM head, KV cache, greedy decoding.
Weights are random from a fixed seed, created in float32 on the CPU, so the same
model can run on any device and dtype and be compared with itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TinyConfig:
    vocab: int = 1000
    hidden: int = 256
    layers: int = 4
    heads: int = 8
    kv_heads: int = 2
    intermediate: int = 704
    rope_theta: float = 10000.0
    eps: float = 1e-5
    tie_embeddings: bool = False
    logit_scale: float = 4.0  # logits' spread: random weights, but peaked predictions
    max_positions: int = 2048

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def init_weights(torch: Any, cfg: TinyConfig, seed: int = 1234) -> dict[str, Any]:
    """Random float32 CPU weights, the same for a given seed on every machine."""
    gen = torch.Generator().manual_seed(seed)

    def linear(out_features: int, in_features: int, scale: float = 1.0) -> Any:
        w = torch.randn(out_features, in_features, generator=gen)
        return w * (scale / math.sqrt(in_features))

    def norm() -> Any:
        return 1.0 + 0.1 * torch.randn(cfg.hidden, generator=gen)

    hd = cfg.head_dim
    weights = {"embed": torch.randn(cfg.vocab, cfg.hidden, generator=gen)}
    for i in range(cfg.layers):
        weights |= {
            f"{i}.attn_norm": norm(),
            f"{i}.q": linear(cfg.heads * hd, cfg.hidden),
            f"{i}.k": linear(cfg.kv_heads * hd, cfg.hidden),
            f"{i}.v": linear(cfg.kv_heads * hd, cfg.hidden),
            f"{i}.o": linear(cfg.hidden, cfg.heads * hd),
            f"{i}.mlp_norm": norm(),
            f"{i}.gate": linear(cfg.intermediate, cfg.hidden),
            f"{i}.up": linear(cfg.intermediate, cfg.hidden),
            f"{i}.down": linear(cfg.hidden, cfg.intermediate),
        }
    weights["final_norm"] = norm()
    if not cfg.tie_embeddings:
        weights["lm_head"] = linear(cfg.vocab, cfg.hidden, cfg.logit_scale)
    return weights


@dataclass(frozen=True)
class Generation:
    """Greedy generation: tokens, each step's top-1 minus top-2 logit, timings."""

    tokens: tuple[int, ...]
    margins: tuple[float, ...]
    first_logits: Any  # float32 CPU tensor [vocab]: the prompt's next-token logits
    prefill_seconds: float
    decode_seconds: float


class TinyLM:
    """The model on one device in one dtype; attention softmax and norms in float32."""

    def __init__(self, torch: Any, cfg: TinyConfig, weights: dict[str, Any], device: str,
                 dtype: Any) -> None:
        self.torch, self.cfg, self.device, self.dtype = torch, cfg, device, dtype
        self.w = {k: v.to(device=device, dtype=dtype) for k, v in weights.items()}
        if cfg.tie_embeddings:
            self.w["lm_head"] = self.w["embed"] * (cfg.logit_scale / math.sqrt(cfg.hidden))
        hd = cfg.head_dim
        inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd)
        angles = torch.outer(torch.arange(cfg.max_positions).float(), inv_freq)
        self.cos = angles.cos().to(device=device, dtype=dtype)
        self.sin = angles.sin().to(device=device, dtype=dtype)

    def new_cache(self, length: int) -> list[tuple[Any, Any]]:
        shape = (self.cfg.kv_heads, length, self.cfg.head_dim)
        return [(self.torch.zeros(shape, device=self.device, dtype=self.dtype),
                 self.torch.zeros(shape, device=self.device, dtype=self.dtype))
                for _ in range(self.cfg.layers)]

    def _norm(self, x: Any, weight: Any) -> Any:
        xf = x.float()
        xf = xf * (xf.pow(2).mean(-1, keepdim=True) + self.cfg.eps).rsqrt()
        return (xf * weight.float()).to(self.dtype)

    def _rope(self, x: Any, start: int) -> Any:
        """Rotary embedding of x [heads, T, head_dim] at positions start..start+T."""
        t = x.shape[1]
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]
        x1, x2 = x[..., ::2], x[..., 1::2]
        out = self.torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2)

    def forward(self, tokens: Any, cache: list[tuple[Any, Any]], start: int) -> Any:
        """float32 logits [T, vocab] for tokens [T] at positions start.., filling the cache."""
        torch, cfg, w = self.torch, self.cfg, self.w
        t, hd = tokens.shape[0], cfg.head_dim
        end = start + t
        x = w["embed"][tokens]
        # Query i (position start+i) may look at keys 0..start+i.
        mask = torch.ones(t, end, dtype=torch.bool, device=self.device).tril(start)
        for i, (k_cache, v_cache) in enumerate(cache):
            h = self._norm(x, w[f"{i}.attn_norm"])
            q = (h @ w[f"{i}.q"].T).view(t, cfg.heads, hd).transpose(0, 1)
            k = (h @ w[f"{i}.k"].T).view(t, cfg.kv_heads, hd).transpose(0, 1)
            v = (h @ w[f"{i}.v"].T).view(t, cfg.kv_heads, hd).transpose(0, 1)
            k_cache[:, start:end] = self._rope(k, start)
            v_cache[:, start:end] = v
            q = self._rope(q, start)
            group = cfg.heads // cfg.kv_heads
            keys = k_cache[:, :end].repeat_interleave(group, dim=0)
            values = v_cache[:, :end].repeat_interleave(group, dim=0)
            scores = (q @ keys.transpose(-1, -2)).float() / math.sqrt(hd)
            scores = scores.masked_fill(~mask, float("-inf"))
            attn = torch.softmax(scores, dim=-1).to(self.dtype) @ values
            x = x + attn.transpose(0, 1).reshape(t, cfg.heads * hd) @ w[f"{i}.o"].T
            h = self._norm(x, w[f"{i}.mlp_norm"])
            gated = torch.nn.functional.silu(h @ w[f"{i}.gate"].T) * (h @ w[f"{i}.up"].T)
            x = x + gated @ w[f"{i}.down"].T
        x = self._norm(x, w["final_norm"])
        return (x @ w["lm_head"].T).float()

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def generate(self, prompt: list[int], new_tokens: int) -> Generation:
        """Greedy decoding of ``new_tokens`` tokens after ``prompt``, with a KV cache."""
        torch = self.torch
        with torch.inference_mode():
            cache = self.new_cache(len(prompt) + new_tokens)
            self._sync()
            began = time.perf_counter()
            last = self.forward(torch.tensor(prompt, device=self.device), cache, 0)[-1]
            first_logits = last.cpu()
            prefilled = time.perf_counter()
            tokens: list[int] = []
            margins: list[float] = []
            for step in range(new_tokens):
                top = last.topk(2)
                token = int(top.indices[0].item())
                tokens.append(token)
                margins.append(float((top.values[0] - top.values[1]).item()))
                if step + 1 < new_tokens:
                    position = len(prompt) + step
                    step_tokens = torch.tensor([token], device=self.device)
                    last = self.forward(step_tokens, cache, position)[-1]
            self._sync()
            done = time.perf_counter()
        return Generation(tuple(tokens), tuple(margins), first_logits, prefilled - began,
                          done - prefilled)
