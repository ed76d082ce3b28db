#!/usr/bin/env python3
"""Writes tests/evals/guard/throughput.jsonl: 2,000 distinct short lines (20 to 120 characters, the kind of text
`keel guard` is fed one per line), sentences of the guard set's texts with their source, chosen by a hash so the
file is the same on every run. `keel bench guard` and the throughput figure of issue #20 read it.

    python3 scripts/build_guard_throughput.py
"""

import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SET = ROOT / "tests/evals/guard/set"
OUT = ROOT / "tests/evals/guard/throughput.jsonl"
LINES = 2000


def main():
    seen = {}
    # Split on newlines only: a JSON line may hold U+2028 and the like, which splitlines() also cuts at.
    for line in (l for part in sorted(SET.glob("*.jsonl")) for l in part.read_text(encoding="utf-8").split("\n")):
        if not line.strip():
            continue
        row = json.loads(line)
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", row["text"]):
            sentence = " ".join(sentence.split())
            if 20 <= len(sentence) <= 120 and sentence not in seen:
                seen[sentence] = row["source"]
    chosen = sorted(seen, key=lambda s: hashlib.sha256(("throughput|" + s).encode()).hexdigest())[:LINES]
    if len(chosen) < LINES:
        raise SystemExit(f"only {len(chosen)} distinct short sentences in {SET}")
    with OUT.open("w", encoding="utf-8") as f:
        for s in chosen:
            f.write(json.dumps({"text": s, "source": seen[s]}, ensure_ascii=False) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {len(chosen)} lines")


if __name__ == "__main__":
    main()
