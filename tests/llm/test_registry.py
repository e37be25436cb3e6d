
import pytest

from convo.config import Settings
from convo.llm.registry import ProvidersFileError, build_registry
from tests.support import run_async


def settings(tmp_path, text: str, suffix: str = ".yaml", **extra) -> Settings:
    path = tmp_path / f"providers{suffix}"
    path.write_text(text)
    return Settings(CONVO_PROVIDERS_FILE=path, CONVO_DATA_DIR=tmp_path, **extra)


YAML = """
providers:
  - name: lab
    type: openai
    base_url: http://127.0.0.1:1/v1
    api_key_env: LAB_KEY
    models:
      - id: qwen
        label: Qwen
        context_window: 32768
      - gpt-4o-mini
  - name: other
    type: openai
    base_url: http://127.0.0.1:2/v1
    models: [{id: qwen, input_usd_per_mtok: 1.5}]
"""


def test_providers_file_models_prices_and_unique_ids(tmp_path, monkeypatch):
    registry = build_registry(settings(tmp_path, YAML))
    models = {m.id: m for m in run_async(registry.list_models())}
    # The same id from two providers is told apart by the provider's name.
    assert {"lab/qwen", "other/qwen", "gpt-4o-mini", "smollm2-135m-instruct"} <= set(models)
    assert models["other/qwen"].input_usd_per_mtok == 1.5
    # Known hosted models get built-in prices and windows when the file gives none.
    assert models["gpt-4o-mini"].input_usd_per_mtok == 0.15 and models["gpt-4o-mini"].context_window == 128_000
    assert run_async(registry.default_model_id()) == "lab/qwen", "first configured model, embedded last"
    resolved = run_async(registry.resolve("lab/qwen"))
    assert resolved.provider.name == "lab" and resolved.model.upstream_id == "qwen"


def test_toml_file_and_default_model(tmp_path):
    text = """
[[providers]]
name = "a"
type = "anthropic"
api_key = "k"
models = [{ id = "claude-sonnet-4-5" }]
"""
    registry = build_registry(settings(tmp_path, text, ".toml", CONVO_DEFAULT_MODEL="smollm2-135m-instruct"))
    models = {m.id: m for m in run_async(registry.list_models())}
    assert models["claude-sonnet-4-5"].output_usd_per_mtok == 15.0
    assert run_async(registry.default_model_id()) == "smollm2-135m-instruct"


def test_nothing_configured_means_the_embedded_model(tmp_path):
    registry = build_registry(Settings(CONVO_DATA_DIR=tmp_path))
    assert run_async(registry.default_model_id()) == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    "text",
    [
        "providers: nope",
        "providers:\n  - type: openai\n",
        "providers:\n  - {name: a}\n  - {name: a}\n",
        "providers:\n  - {name: a, type: smoke}\n",
        "providers:\n  - {name: a, type: local}\n",
        "providers: [\n",
    ],
)
def test_broken_providers_files_say_what_is_wrong(tmp_path, text):
    with pytest.raises(ProvidersFileError):
        build_registry(settings(tmp_path, text))
