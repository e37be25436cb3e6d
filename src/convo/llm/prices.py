"""Built-in prices (USD per million tokens) and context windows of well-known hosted models.

Figures are the providers' published list prices; a providers file overrides them. Model ids with a
date suffix (gpt-4o-2024-08-06) match their family by the longest known prefix.
"""

from __future__ import annotations

from convo.llm.base import ModelSpec

_OPENAI = [
    ModelSpec("gpt-4.1", "GPT-4.1", 1_047_576, 2.0, 8.0),
    ModelSpec("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 0.4, 1.6),
    ModelSpec("gpt-4.1-nano", "GPT-4.1 nano", 1_047_576, 0.1, 0.4),
    ModelSpec("gpt-4o", "GPT-4o", 128_000, 2.5, 10.0),
    ModelSpec("gpt-4o-mini", "GPT-4o mini", 128_000, 0.15, 0.6),
    ModelSpec("gpt-4-turbo", "GPT-4 Turbo", 128_000, 10.0, 30.0),
    ModelSpec("gpt-4", "GPT-4", 8_192, 30.0, 60.0),
    ModelSpec("gpt-3.5-turbo", "GPT-3.5 Turbo", 16_385, 0.5, 1.5),
    ModelSpec("o1", "o1", 200_000, 15.0, 60.0),
    ModelSpec("o3", "o3", 200_000, 2.0, 8.0),
    ModelSpec("o3-mini", "o3-mini", 200_000, 1.1, 4.4),
    ModelSpec("o4-mini", "o4-mini", 200_000, 1.1, 4.4),
]

_ANTHROPIC = [
    ModelSpec("claude-opus-4-1", "Claude Opus 4.1", 200_000, 15.0, 75.0),
    ModelSpec("claude-opus-4", "Claude Opus 4", 200_000, 15.0, 75.0),
    ModelSpec("claude-sonnet-4-5", "Claude Sonnet 4.5", 200_000, 3.0, 15.0),
    ModelSpec("claude-sonnet-4", "Claude Sonnet 4", 200_000, 3.0, 15.0),
    ModelSpec("claude-3-7-sonnet", "Claude Sonnet 3.7", 200_000, 3.0, 15.0),
    ModelSpec("claude-haiku-4-5", "Claude Haiku 4.5", 200_000, 1.0, 5.0),
    ModelSpec("claude-3-5-haiku", "Claude Haiku 3.5", 200_000, 0.8, 4.0),
    ModelSpec("claude-3-haiku", "Claude Haiku 3", 200_000, 0.25, 1.25),
]

# Offered when ANTHROPIC_API_KEY is set and no providers file lists models.
ANTHROPIC_DEFAULT_MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"]

_KNOWN = {spec.id: spec for spec in _OPENAI + _ANTHROPIC}


def known(model_id: str) -> ModelSpec | None:
    """The built-in entry for a model id, matching dated variants by their longest known prefix."""
    best: ModelSpec | None = None
    for key, spec in _KNOWN.items():
        if (model_id == key or model_id.startswith(key + "-")) and (best is None or len(key) > len(best.id)):
            best = spec
    return best


def with_known(spec: ModelSpec) -> ModelSpec:
    """Fill what a configured model leaves unset from the built-in table."""
    base = known(spec.id)
    if base is None:
        return spec
    return ModelSpec(
        id=spec.id,
        label=spec.label or (base.label if base.id == spec.id else spec.id),
        context_window=spec.context_window or base.context_window,
        input_usd_per_mtok=spec.input_usd_per_mtok
        if spec.input_usd_per_mtok is not None
        else base.input_usd_per_mtok,
        output_usd_per_mtok=spec.output_usd_per_mtok
        if spec.output_usd_per_mtok is not None
        else base.output_usd_per_mtok,
    )
