"""Which providers and models this server offers, built from settings and the providers file."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convo.config import Settings
from convo.errors import InvalidInput
from convo.llm.anthropic import AnthropicProvider
from convo.llm.base import ModelInfo, ModelSpec, Provider
from convo.llm.local_gguf import EMBEDDED_LABEL, EMBEDDED_MODEL_ID, LocalProvider, embedded_model_path
from convo.llm.openai_compat import OpenAIProvider
from convo.llm.prices import with_known


class ProvidersFileError(ValueError):
    pass


@dataclass(frozen=True)
class Resolved:
    provider: Provider
    model: ModelInfo


class Registry:
    def __init__(self, providers: list[Provider], default_model: str | None) -> None:
        self.providers = providers
        self._default = default_model

    async def list_models(self) -> list[ModelInfo]:
        """Every model once; an id offered by two providers is prefixed with the provider's name."""
        listed: list[tuple[Provider, ModelSpec]] = []
        for provider in self.providers:
            listed.extend((provider, with_known(spec)) for spec in await provider.models())
        counts: dict[str, int] = {}
        for _, spec in listed:
            counts[spec.id] = counts.get(spec.id, 0) + 1
        return [
            ModelInfo(
                id=spec.id if counts[spec.id] == 1 else f"{provider.name}/{spec.id}",
                provider=provider.name,
                upstream_id=spec.id,
                label=spec.label or spec.id,
                context_window=spec.context_window,
                input_usd_per_mtok=spec.input_usd_per_mtok,
                output_usd_per_mtok=spec.output_usd_per_mtok,
            )
            for provider, spec in listed
        ]

    async def default_model_id(self) -> str | None:
        models = await self.list_models()
        if self._default and any(m.id == self._default for m in models):
            return self._default
        # Nothing chosen: the first configured provider's first model; the embedded one comes last.
        return models[0].id if models else None

    async def resolve(self, model_id: str | None) -> Resolved:
        models = await self.list_models()
        wanted = model_id or await self.default_model_id()
        for info in models:
            if wanted in (info.id, f"{info.provider}/{info.upstream_id}"):
                provider = next(p for p in self.providers if p.name == info.provider)
                return Resolved(provider, info)
        raise InvalidInput(f"Unknown model {wanted!r}; GET /api/models lists those available.", code="unknown_model")

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()


def build_registry(settings: Settings) -> Registry:
    providers: list[Provider] = []
    if settings.providers_file:
        providers.extend(_from_file(settings.providers_file, settings))
    names = {p.name for p in providers}
    if (settings.openai_base_url or settings.openai_api_key) and "openai" not in names:
        providers.append(
            OpenAIProvider(
                "openai",
                base_url=settings.openai_base_url,
                api_key=settings.openai_api_key,
                models=None,
                timeout=settings.upstream_timeout_seconds,
            )
        )
    if settings.anthropic_api_key and "anthropic" not in names:
        providers.append(
            AnthropicProvider(
                "anthropic",
                api_key=settings.anthropic_api_key,
                base_url=settings.anthropic_base_url,
                models=None,
                timeout=settings.upstream_timeout_seconds,
            )
        )
    path = settings.local_model_path or embedded_model_path()
    if path is not None and "local" not in names:
        providers.append(
            LocalProvider(
                "local",
                path=path,
                model=ModelSpec(EMBEDDED_MODEL_ID, EMBEDDED_LABEL),
                context_window=settings.local_context_window,
                threads=settings.local_threads,
            )
        )
    return Registry(providers, settings.default_model)


def _from_file(path: Path, settings: Settings) -> list[Provider]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProvidersFileError(f"cannot read providers file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        # The parsers' messages quote the offending line, which may be an `api_key:`; so the line
        # number only, and no chained exception for a traceback to print.
        raise ProvidersFileError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}"
                                 f"{_where(exc)}") from None
    entries = (data or {}).get("providers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ProvidersFileError(f"{path}: expected a top-level 'providers' list")
    providers: list[Provider] = []
    seen: set[str] = set()
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not name or name in seen:
            raise ProvidersFileError(f"{path}: every provider needs a unique name (got {name!r})")
        seen.add(name)
        providers.append(_provider(entry, settings, path))
    return providers


def _where(exc: yaml.YAMLError | tomllib.TOMLDecodeError) -> str:
    """' near line N' from the parser's error, when it knows (YAML: where the broken part starts too)."""
    marks = [getattr(exc, name, None) for name in ("context_mark", "problem_mark")]
    lines = sorted({mark.line + 1 for mark in marks if mark is not None})
    if lines:
        return f" near line{'s' if len(lines) > 1 else ''} " + " and ".join(map(str, lines))
    found = re.search(r"\(at line (\d+)", str(exc))  # tomllib (3.11) keeps the position in its message only
    return f" near line {found[1]}" if found else ""


def _provider(entry: dict[str, Any], settings: Settings, path: Path) -> Provider:
    name, kind = entry["name"], entry.get("type", "openai")
    models = [_model_spec(m, path) for m in entry["models"]] if entry.get("models") is not None else None
    api_key = entry.get("api_key")
    if not api_key and entry.get("api_key_env"):
        import os  # a key named by the file, not a Convo setting

        api_key = os.environ.get(entry["api_key_env"])
    timeout = float(entry.get("timeout", settings.upstream_timeout_seconds))
    if kind == "openai":
        return OpenAIProvider(name, base_url=entry.get("base_url"), api_key=api_key, models=models, timeout=timeout)
    if kind == "anthropic":
        return AnthropicProvider(
            name, api_key=api_key, base_url=entry.get("base_url"), models=models, timeout=timeout
        )
    if kind == "local":
        if not entry.get("path"):
            raise ProvidersFileError(f"{path}: local provider {name!r} needs a path to a GGUF file")
        gguf = Path(entry["path"]).expanduser()
        spec = models[0] if models else ModelSpec(gguf.stem, gguf.stem)
        return LocalProvider(
            name, path=gguf, model=spec, context_window=settings.local_context_window, threads=settings.local_threads
        )
    raise ProvidersFileError(f"{path}: provider {name!r} has unknown type {kind!r} (openai, anthropic, local)")


def _model_spec(raw: Any, path: Path) -> ModelSpec:
    if isinstance(raw, str):
        return ModelSpec(id=raw)
    if not isinstance(raw, dict) or not raw.get("id"):
        raise ProvidersFileError(f"{path}: each model needs an id")

    def number(key: str) -> float | None:
        return float(raw[key]) if raw.get(key) is not None else None

    window = raw.get("context_window")
    return ModelSpec(
        id=str(raw["id"]),
        label=raw.get("label"),
        context_window=int(window) if window is not None else None,
        input_usd_per_mtok=number("input_usd_per_mtok"),
        output_usd_per_mtok=number("output_usd_per_mtok"),
    )
