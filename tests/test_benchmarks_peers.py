"""The peers benchmark's report writer on synthetic numbers: tables, ratios, targets (no network, no processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import peers, peers_report

META: dict[str, Any] = {"kind": "meta", "command": ".venv/bin/python benchmarks/peers.py", "date": "2026-12-01 10:00",
                        "machine": "2 cores (test CPU)", "quick": False, "pinned": True, "cell_seconds": 15}


def cell(system: str, api: str, stream: bool, c: int, rps: float, p50: float,
         cpu: float | None = None) -> dict[str, Any]:
    return {"kind": "cell", "system": system, "api": api, "stream": stream, "c": c, "ok": 100, "errors": 0,
            "rps": rps, "p50": p50, "p99": p50 + 5.0, "ttfb_p50": p50 if stream else None, "cpu_ms_per_req": cpu,
            "peak_rss_kb": 51200 if cpu else None, "truncated": False}


def records() -> list[dict[str, Any]]:
    # per system: (req/s at c=64, p50 at c=1, CPU ms/req); direct p50 is 21 ms at c=1
    numbers = {"direct": (2400.0, 21.0, None), "floor": (2000.0, 22.0, 0.4), "cfr-pass": (1900.0, 22.5, 0.3),
               "cfr-routed": (250.0, 29.0, 4.0), "cfr-routed-long": (60.0, 40.0, 15.0),
               "cfr-cache": (1500.0, 22.0, 0.6), "litellm": (125.0, 31.0, 8.0), "ccr": (1000.0, 24.0, 0.7)}
    rows: list[dict[str, Any]] = [META]
    for system, (rps, p50, cpu) in numbers.items():
        for api in ("anthropic",) if system == "ccr" else ("openai", "anthropic"):
            for stream in (False,) if system == "cfr-routed-long" else (False, True):
                rows += [cell(system, api, stream, 1, 40.0, p50, cpu), cell(system, api, stream, 64, rps, p50 + 3, cpu)]
    rows += [{"kind": "system", "system": "cfr-cache", "ready_s": 2.5, "peak_rss_kb": 400 * 1024,
              "install_bytes": 300 * 2**20, "version": "0.1.0"},
             {"kind": "system", "system": "litellm", "version": "1.108.7", "ready_s": 9.0},
             {"kind": "system", "system": "ccr", "skipped": "skipped: npm install failed"}]
    return rows


def line(report: str, start: str, section: str = "") -> str:
    lines = report.split(section, 1)[1] if section else report
    return next(text for text in lines.splitlines() if text.startswith(start))


def test_ratios_to_the_floor_and_to_each_peer() -> None:
    report = peers_report.render(records(), META)
    row = line(report, "| ours, pass-through | openai |", "## Ratios")
    # req/s 1900 vs floor 2000, LiteLLM 125; added p50 at c=1: 1.5 ms vs floor 1.0 ms and LiteLLM 10 ms
    assert "| 0.95× | 0.95× | 1.50× | 15.20× | 15.20× | 0.15× | – | – | – | 0.75× |" in row
    ccr_row = line(report, "| ours, routed (router + draft accepted) | anthropic |", "## Ratios")
    assert "| 0.25× | 0.25× |" in ccr_row  # 250 req/s ÷ claude-code-router's 1000
    assert peers_report.ratio(1.0, 0.2, peers_report.MIN_ADDED_MS) is None  # a reference adding ~0 ms: no ratio


def test_summary_and_targets() -> None:
    run = peers_report.Run.of(records(), META)
    assert run.concurrency == (1, 64)
    assert run.added("cfr-routed", "openai", False, 1) == 8.0
    report = peers_report.render(records(), META, "benchmarks.png")
    assert line(report, "| routed, short prompt, openai: ≤ 10 ms added").endswith("| 8.00 ms | met |")
    assert line(report, "| routed, short prompt, openai: ≥ 300 req/s").endswith("| 250.00 req/s | **missed** |")
    assert line(report, "| routed, 2,000-char prompt, anthropic").endswith("| 60.00 req/s | met |")
    assert line(report, "| pass-through, openai, streaming: ≥ 90%").endswith("| 0.95 × floor | met |")
    assert line(report, "| pass-through, openai, JSON: ≤ 1.5 ms").endswith("| 1.50 ms | met |")
    assert line(report, "| start-up to ready").endswith("| 2.50 s | met |")
    assert line(report, "| peak resident memory").endswith("| 400.00 MB | **missed** |")
    assert "| LiteLLM proxy 1.108.7 | openai | +10.0 | +10.0 | +10.0 |" in report
    assert "skipped: npm install failed" in report and "![" in report
    assert "`.venv/bin/python benchmarks/peers.py` on 2026-12-01 10:00" in report


def test_quick_run_is_marked_and_unmeasured_targets_say_so() -> None:
    quick = {**META, "quick": True}
    rows = [quick, cell("direct", "openai", False, 16, 700.0, 21.0), cell("floor", "openai", False, 16, 690.0, 22.0)]
    report = peers_report.render(rows, quick)
    assert "Smoke run" in report
    assert line(report, "| cache hit, openai").endswith("| not measured |")


def test_plot_and_cli(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    peers_report.write(records(), META, out)
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "(benchmarks.png)" in out.read_text()
    args = peers.parse_args(["--quick", "--systems", "floor,ccr"])
    assert args.quick and args.systems == "floor,ccr"
