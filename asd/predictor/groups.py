"""Feature groups of asd.core.features.FEATURE_NAMES, for the ablation table (docs/predictor.md)."""

from __future__ import annotations

from asd.core.features import FEATURE_NAMES, HIDDEN_WIDTH

# group → its columns; the columns in no group (stage, prompt_len, draft_len, ended_eos, accept_ratio_prev)
# stay in every ablation
FEATURE_GROUPS: dict[str, list[str]] = {
    # the pooled last-layer hidden state's fixed random projection
    "hidden": [f"hidden_{i}" for i in range(HIDDEN_WIDTH)],
    # statistics of the model's next-token distributions: over the response (entropy, top-1 probability and
    # margin: mean/min/max/last; fraction of low-confidence tokens; mean log-probability) and over the prompt
    # (mean NLL)
    "token_stats": [
        *(f"{s}_{a}" for s in ("entropy", "maxprob", "margin") for a in ("mean", "min", "max", "last")),
        "low_conf_frac",
        "mean_logprob",
        "prompt_nll",
    ],
    # the response's text
    "text": ["digit_frac", "num_lines", "nesting_depth"],
}


def group_columns(group: str, names: list[str] | None = None) -> list[int]:
    """Column indices of ``group`` in ``names`` (default FEATURE_NAMES)."""
    names = FEATURE_NAMES if names is None else names
    cols = [names.index(c) for c in FEATURE_GROUPS[group] if c in names]
    return cols
