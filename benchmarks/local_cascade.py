"""Benchmark: the cascade through the proxy on real local models, judged by gold answers.

Needs `cascadeflow local-models serve` running (draft and strong URLs below). Starts the proxy in process with
a `local` cascade rule (draft -> strong), asks each question through it with the official OpenAI SDK, and once
more straight to the strong model, and prints for each proxy setting: the share of questions the draft served,
how many served drafts were wrong, the final accuracy against always-strong, and the cost in strong-model
tokens. Not a test: figures only.

    .venv/bin/python benchmarks/local_cascade.py --draft-url http://127.0.0.1:8611/v1 \\
        --strong-url http://127.0.0.1:8612/v1 --short 30 --gsm8k 5 --gsm8k-offset 1000
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import openai

from router.app import create_app
from router.assets import assets_root
from router.replay.runner import BackgroundServer
from router.settings import Settings
from training.local_data import Question, is_right, questions

SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "router off": {"learned_router": {"enabled": False}},
    "router off, 3 samples": {"learned_router": {"enabled": False}, "verify": {"samples": 3}},
}


def proxy_settings(args: argparse.Namespace, extra: dict[str, Any], state: Path) -> Settings:
    rule: dict[str, Any] = {"name": "local", "draft_model": args.draft_model, "verifier_model": args.strong_model}
    if "verify" in extra:
        rule["verify"] = extra["verify"]
    providers = {"draft": {"kind": "openai", "base_url": args.draft_url, "api_key": "local", "supports_logprobs": True,
                           "forward_client_key": False},
                 "strong": {"kind": "openai", "base_url": args.strong_url, "api_key": "local",
                            "forward_client_key": False}}
    return Settings(providers=providers, cascade_rules=[rule],
                    models=[{"match": args.draft_model, "provider": "draft"},
                            {"match": args.strong_model, "provider": "strong"}],
                    outcome_log={"enabled": False}, cache={"directory": None}, data_dir=str(state),
                    learned_router=extra.get("learned_router", {}), verifier={"enabled": False})


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
    parser.add_argument("--short", type=int, default=60)
    parser.add_argument("--gsm8k", type=int, default=5)
    parser.add_argument("--gsm8k-offset", type=int, default=1000, help="skip the problems used for training")
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--state", type=Path, default=Path("/tmp/cascadeflow-local-cascade"))
    args = parser.parse_args()
    data = assets_root() / "data"
    short = list(itertools.islice(questions(data / "local" / "short_questions.jsonl", data / "gsm8k" / "train.jsonl",
                                            0), args.short))
    gsm8k = [q for q in questions(Path("/dev/null"), data / "gsm8k" / "train.jsonl", args.gsm8k_offset + args.gsm8k)]
    asked = short + gsm8k[args.gsm8k_offset:]
    strong = openai.OpenAI(base_url=args.strong_url, api_key="local", max_retries=0, timeout=600)
    strong_right = [is_right(q, ask(strong, args.strong_model, q, args.max_tokens)[0]) for q in asked]
    print(f"{len(asked)} questions; always-strong accuracy {sum(strong_right) / len(asked):.1%}")
    print(f"{'setting':<24}{'drafted':>9}{'served wrong':>14}{'accuracy':>10}{'vs strong':>11}")
    for name, extra in SETTINGS.items():
        server = BackgroundServer(create_app(proxy_settings(args, extra, args.state)))
        with server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0, timeout=600)
            results = [(ask(client, "cascade/local", q, args.max_tokens), q) for q in asked]
        served = [is_right(q, text) for (text, route), q in results if route == "draft"]
        right = sum(is_right(q, text) for (text, _), q in results)
        wrong_served = len(served) - sum(served)
        print(f"{name:<24}{len(served) / len(asked):>9.1%}{f'{wrong_served}/{len(served)}':>14}"
              f"{right / len(asked):>10.1%}{right / max(sum(strong_right), 1):>11.1%}")


if __name__ == "__main__":
    main()
