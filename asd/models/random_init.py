"""Random-weight Qwen2-architecture checkpoints (tests, benchmarks, cost profiling at real shapes).

``save_random_qwen2(dir, ...)`` writes ``config.json`` + ``model.safetensors``
that load through the ordinary ``from_pretrained(dir)`` path, so tests exercise
the same loading code as a real checkpoint. ``init_std`` scales the weights:
a larger value gives peakier, more input-dependent next-token distributions
(useful to make two random models disagree often).
"""

from __future__ import annotations

from pathlib import Path


def save_random_qwen2(
    out_dir: str | Path,
    *,
    vocab_size: int = 99,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int | None = None,
    intermediate_size: int = 64,
    max_position_embeddings: int = 512,
    seed: int = 0,
    init_std: float = 0.02,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Path:
    """Build a Qwen2ForCausalLM with random weights (seeded) and save it to ``out_dir``; returns the folder.

    ``head_dim`` defaults to ``hidden_size // num_heads``; another value (e.g. 80 with hidden 96) decouples
    the attention width from the hidden size, as some checkpoints do."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        initializer_range=init_std,
        tie_word_embeddings=False,
        use_sliding_window=False,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    cfg.head_dim = head_dim if head_dim is not None else hidden_size // num_heads  # saved with the config
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * init_std)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def save_perturbed(base_dir: str | Path, out_dir: str | Path, *, noise: float, seed: int = 0) -> Path:
    """A copy of the checkpoint in ``base_dir`` with Gaussian noise of relative size ``noise`` on every weight.

    Small noise gives a draft model that agrees with the base most of the time but not always:
    the acceptance paths of the cascade (partial prefixes, full acceptance) then all occur.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise * (p.std() if p.numel() > 1 else p.abs() + 1e-3))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def random_family(root: str | Path, *, stages: int = 3, seed: int = 0, noise: float = 0.4, **shape) -> list[Path]:
    """A hierarchy of ``stages`` checkpoints under ``root``: the last is random (``shape``, ``seed``); stage k
    is the last one perturbed by ``noise·(K−1−k)/(K−1)`` (smaller stages disagree more often)."""
    root = Path(root)
    K = stages
    final = save_random_qwen2(root / f"s{K - 1}", seed=seed, **shape)
    out = [
        save_perturbed(final, root / f"s{k}", noise=noise * (K - 1 - k) / (K - 1), seed=seed * 100 + k)
        for k in range(K - 1)
    ]
    return [*out, final]
