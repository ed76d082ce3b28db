#!/usr/bin/env python3
"""Writes src/interface/guard_exemplars.jsonl, the similarity layer's exemplars, from the train split of
tests/evals/guard/set/ (the guard set's parts): each direct injection's first two windows as `attack`, each benign text's first
two windows as `benign` (a window is a run of sentences of up to about 300 characters, as the guard cuts them),
and, from each indirect injection, the windows that no benign text of the train split has: its host document
appears unchanged among the benign texts, so what is left is the payload and its seams.

Rerun after rebuilding the guard set:  python3 scripts/build_guard_exemplars.py
"""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = 300


def windows(text):
    out, current = [], ""
    for sentence in re.findall(r"[^.!?\n。！？]*[.!?\n。！？]?", text):
        if not sentence:
            continue
        if current and len(current.encode()) + len(sentence.encode()) > TARGET:
            out.append(current)
            current = ""
        current += sentence
        while len(current.encode()) > 2 * TARGET:
            out.append(current[:TARGET])
            current = current[TARGET:]
    if current.strip():
        out.append(current)
    return [w for w in out if any(c.isalnum() for c in w)]


def key(w):
    return " ".join(w.split()).lower()


def main():
    parts = sorted((ROOT / "tests/evals/guard/set").glob("*.jsonl"))
    items = [json.loads(l) for part in parts for l in part.open(encoding="utf-8") if l.strip()]
    seen = set()
    rows = []
    benign_windows = {key(w) for i in items if i["split"] == "train" and i["kind"] == "benign" for w in windows(i["text"])}
    for item in items:
        if item["split"] != "train":
            continue
        if item["kind"] == "indirect":
            for w in windows(item["text"]):
                k = key(w)
                if k in benign_windows or k in seen:
                    continue
                seen.add(k)
                rows.append({"class": "attack", "text": w.strip(), "from": item["id"]})
            continue
        cls = "attack" if item["kind"] == "direct" else "benign"
        for w in windows(item["text"])[:2]:
            k = key(w)
            if k in seen:
                continue
            seen.add(k)
            rows.append({"class": cls, "text": w.strip(), "from": item["id"]})
    out = ROOT / "src/interface/guard_exemplars.jsonl"
    with out.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{out}: {sum(r['class'] == 'attack' for r in rows)} attack and {sum(r['class'] == 'benign' for r in rows)} benign windows")


if __name__ == "__main__":
    main()
