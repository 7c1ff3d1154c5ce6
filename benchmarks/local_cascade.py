"""Benchmark: the cascade through the proxy on real local models, judged by gold answers.

Needs `cascadeflow local-models serve` running (draft and strong URLs below). Starts the proxy in process with
the config `local-models serve` prints (the shipped router and verifier, the `cascade/local` rule with its
draft samples), asks each held-out question through it with the official OpenAI SDK, and once more straight to
the strong model, and prints for the defaults and each variant: the share of questions the draft served, how
many served drafts were wrong, and the final accuracy against always-strong. Not a test: figures only.

    .venv/bin/python benchmarks/local_cascade.py --draft-url http://127.0.0.1:8611/v1 \\
        --strong-url http://127.0.0.1:8612/v1 --gsm8k 10 --gsm8k-offset 1000
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import yaml

from router.app import create_app
from router.assets import assets_root
from router.local.catalog import LOCAL_SAMPLES, config_snippet
from router.replay.runner import BackgroundServer
from router.settings import Settings
from training.local_data import Question, is_right, questions

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no samples": {"samples": 1},
    "router off": {"learned_router": {"enabled": False}},
}
"""Each variant changes the config `cascadeflow local-models serve` prints (the defaults) in one way."""


def proxy_settings(args: argparse.Namespace, variant: dict[str, Any], state: Path) -> Settings:
    """The config `local-models serve` prints for these servers, with the variant's change and state in `state`."""
    snippet = config_snippet({args.draft_model: args.draft_url, args.strong_model: args.strong_url},
                             context_windows={args.draft_model: args.ctx_size, args.strong_model: args.ctx_size},
                             draft=args.draft_model, strong=args.strong_model,
                             samples=variant.get("samples", LOCAL_SAMPLES))
    config = yaml.safe_load(snippet) | {"data_dir": str(state), "outcome_log": {"enabled": False}}
    if "learned_router" in variant:
        config["learned_router"] = variant["learned_router"]
    return Settings(**config)


def ask(client: openai.OpenAI, model: str, question: Question, max_tokens: int) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=max_tokens, temperature=0,
        messages=[{"role": "user", "content": question.text}])
    return raw.parse().choices[0].message.content or "", raw.headers.get("x-cascadeflow-route", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draft-url", required=True)
    parser.add_argument("--strong-url", required=True)
    parser.add_argument("--draft-model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--strong-model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--questions", type=Path, default=assets_root() / "data" / "local" / "heldout_questions.jsonl",
                        help="short questions training never saw (default: the shipped held-out set)")
    parser.add_argument("--short", type=int, default=50)
    parser.add_argument("--ctx-size", type=int, default=4096, help="the servers' context window")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--gsm8k", type=int, default=5)
    parser.add_argument("--gsm8k-offset", type=int, default=1000, help="skip the problems used for training")
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--state", type=Path, default=Path("/tmp/cascadeflow-local-cascade"))
    args = parser.parse_args()
    data = assets_root() / "data"
    short = list(itertools.islice(questions(args.questions, data / "gsm8k" / "train.jsonl", 0), args.short))
    gsm8k = [q for q in questions(Path("/dev/null"), data / "gsm8k" / "train.jsonl", args.gsm8k_offset + args.gsm8k)]
    asked = short + gsm8k[args.gsm8k_offset:]
    strong = openai.OpenAI(base_url=args.strong_url, api_key="local", max_retries=0, timeout=600)
    strong_right = [is_right(q, ask(strong, args.strong_model, q, args.max_tokens)[0]) for q in asked]
    print(f"{len(asked)} questions; always-strong accuracy {sum(strong_right) / len(asked):.1%}")
    print(f"{'setting':<24}{'served':>9}{'served wrong':>14}{'accuracy':>10}{'vs strong':>11}")
    for name in args.variants:
        server = BackgroundServer(create_app(proxy_settings(args, VARIANTS[name], args.state)))
        with server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0, timeout=600)
            results = [(ask(client, "cascade/local", q, args.max_tokens), q) for q in asked]
        served = [is_right(q, text) for (text, route), q in results if route == "draft"]
        right = sum(is_right(q, text) for (text, _), q in results)
        wrong_served = len(served) - sum(served)
        routes = Counter(route for (_, route), _ in results)
        print(f"{name:<24}{len(served) / len(asked):>9.1%}{f'{wrong_served}/{len(served)}':>14}"
              f"{right / len(asked):>10.1%}{right / max(sum(strong_right), 1):>11.1%}   routes {dict(routes)}")


if __name__ == "__main__":
    main()
