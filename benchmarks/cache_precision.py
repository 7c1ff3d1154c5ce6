"""Prints precision and recall of cache hits on the precision set for a sweep of similarity thresholds.

    .venv/bin/python benchmarks/cache_precision.py
"""

from __future__ import annotations

from router.embedding.encoder import Encoder
from tests.cache.test_precision import predicted_hits


def main() -> None:
    encoder = Encoder()
    encoder.load()
    print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'false hits':>10}  false hits by kind")
    for step in range(80, 99, 2):
        threshold = step / 100
        results = predicted_hits(encoder, threshold)
        true_hits = sum(1 for _, should, hit, _ in results if hit and should)
        false = [kind for kind, should, hit, _ in results if hit and not should]
        positives = sum(1 for _, should, _, _ in results if should)
        precision = true_hits / max(1, true_hits + len(false))
        kinds = {kind: false.count(kind) for kind in sorted(set(false))}
        print(f"{threshold:>9.2f} {precision:>9.3f} {true_hits / positives:>7.3f} {len(false):>10}  {kinds}")
    near = [(kind, round(sim, 3)) for kind, should, _, sim in predicted_hits(encoder, 0.0) if not should
            and not kind.startswith("scope")]
    print("highest raw near-miss similarities (before the guard):", sorted(near, key=lambda item: -item[1])[:5])


if __name__ == "__main__":
    main()
