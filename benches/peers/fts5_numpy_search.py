#!/usr/bin/env python3
"""Peer side of Keel's hybrid-search latency benchmark: SQLite FTS5 + numpy.

The obvious "do it yourself" hybrid search a Python developer would write:
SQLite FTS5 (porter stemmer) for BM25, a numpy matrix for brute-force cosine
similarity, and reciprocal rank fusion of the two lists.

Dependencies: Python >= 3.11 whose sqlite3 module has FTS5 (CPython's
bundled SQLite on Debian and the python.org/pyenv builds do) and numpy
(pinned in benches/peers/requirements-memory.txt; the st-venv has it).

Usage:

    python3 benches/peers/fts5_numpy_search.py --db bench.sqlite \
        --vectors items.f32 --query-vectors queries.f32 \
        --queries-file queries.txt --k 10 --runs 3 --json

Inputs (written by Keel):

* --db: a SQLite file with a table bench_items(id INTEGER PRIMARY KEY,
  text TEXT). It is opened read-only and never modified.
* --vectors: raw little-endian float32 matrix, N x --dim (default 384), no
  header; row i belongs to the i-th item in ascending id order (N must equal
  the number of rows of bench_items).
* --query-vectors: raw little-endian float32 matrix, Q x --dim.
* --queries-file: UTF-8, one query per line (Q lines, same order as
  --query-vectors; a trailing newline is fine, blank lines are queries too).

Untimed setup: the items are copied into an FTS5 table
`fts USING fts5(text, tokenize='porter unicode61')` (rowid = item id) in
--fts-db (default an in-memory database); the item vectors are loaded with
numpy and L2-normalised; then every query is run once as a warm-up.

Timed, per query (time.perf_counter around all three steps):

1. lexical: the query is split into terms (maximal runs of Unicode letters,
   digits and underscores, i.e. Python's \\w+), each term double-quoted
   (inner quotes doubled) and the terms joined with OR; then
   SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts), rowid
   LIMIT --candidates (default 50). A query without terms gives no lexical
   hits.
2. vector: q / ||q||, scores = items @ q (cosine), np.argpartition for the
   top --candidates, then those sorted by (-score, id).
3. fusion: reciprocal rank fusion, score(d) = sum over the lists that hold d
   of 1 / (--rrf-k + rank), rank 1-based, --rrf-k default 60; the --k best
   by (-score, id).

Each query is timed --runs times (default 3). Percentiles are taken over all
Q x runs samples with numpy.percentile (linear interpolation). With --json,
prints exactly one JSON object on stdout:

    {"p50_ms", "p95_ms", "mean_ms", "fts_p50_ms", "vec_p50_ms",
     "fuse_p50_ms", "n_items", "n_queries", "runs", "k", "candidates",
     "rrf_k", "dim", "threads", "sqlite", "numpy"}

otherwise a short human-readable summary. --results-out PATH also writes,
per query (JSONL, in query order), {"query": i, "ids": [top-k item ids]}
from the last run, so the fused lists can be compared with Keel's.

--threads N sets OMP/OpenBLAS/MKL thread counts before numpy is imported
(default 1: one query at a time on one core, like an interactive search).
"""

import argparse
import json
import os
import re
import sqlite3
import sys
import time

TERM_RE = re.compile(r"\w+", re.UNICODE)


def fts_query(text):
    """OR of double-quoted terms, or None when the text has no terms."""
    terms = TERM_RE.findall(text)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def main():
    ap = argparse.ArgumentParser(description="SQLite FTS5 + numpy hybrid search latency")
    ap.add_argument("--db", required=True, help="SQLite file with bench_items(id, text)")
    ap.add_argument("--vectors", required=True, help="raw f32 LE, N x dim, ascending id order")
    ap.add_argument("--query-vectors", required=True, help="raw f32 LE, Q x dim")
    ap.add_argument("--queries-file", required=True, help="one query per line")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=50,
                    help="depth of each list before fusion")
    ap.add_argument("--rrf-k", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fts-db", default=":memory:",
                    help="where to build the FTS5 table (default in memory); "
                         "an existing file is refused")
    ap.add_argument("--results-out", help="write the fused top-k ids per query (JSONL)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if min(args.k, args.candidates, args.runs, args.dim, args.threads) < 1:
        ap.error("--k, --candidates, --runs, --dim and --threads must be >= 1")

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    # --- untimed setup -----------------------------------------------------
    if args.fts_db != ":memory:" and os.path.exists(args.fts_db):
        sys.exit(f"--fts-db {args.fts_db} exists; give a new path")
    con = sqlite3.connect(args.fts_db)
    src = sqlite3.connect(f"file:{os.path.abspath(args.db)}?mode=ro", uri=True)
    rows = src.execute("SELECT id, text FROM bench_items ORDER BY id").fetchall()
    src.close()
    if not rows:
        sys.exit(f"{args.db}: bench_items is empty")
    ids = np.array([r[0] for r in rows], dtype=np.int64)

    try:
        con.execute("CREATE VIRTUAL TABLE fts USING fts5(text, tokenize='porter unicode61')")
    except sqlite3.OperationalError as e:
        sys.exit(f"this Python's sqlite3 has no FTS5 ({e})")
    with con:
        con.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)",
                        ((r[0], r[1] if r[1] is not None else "") for r in rows))
    con.execute("INSERT INTO fts(fts) VALUES ('optimize')")
    con.commit()
    del rows

    n = len(ids)
    items = np.fromfile(args.vectors, dtype="<f4")
    if items.size != n * args.dim:
        sys.exit(f"{args.vectors}: {items.size} floats, expected {n} x {args.dim}")
    items = items.reshape(n, args.dim).astype(np.float32, copy=False)
    norms = np.linalg.norm(items, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    items = np.ascontiguousarray(items / norms, dtype=np.float32)

    qvecs = np.fromfile(args.query_vectors, dtype="<f4")
    if qvecs.size % args.dim:
        sys.exit(f"{args.query_vectors}: {qvecs.size} floats is not a multiple of {args.dim}")
    qvecs = qvecs.reshape(-1, args.dim).astype(np.float32, copy=False)
    with open(args.queries_file, encoding="utf-8") as f:
        queries = f.read().split("\n")
    if queries and queries[-1] == "":
        queries.pop()
    if len(queries) != len(qvecs):
        sys.exit(f"{len(queries)} queries but {len(qvecs)} query vectors")
    if not queries:
        sys.exit("no queries")
    fts_texts = [fts_query(q) for q in queries]

    cand = min(args.candidates, n)
    sql = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts), rowid LIMIT ?"

    def search(i):
        t0 = time.perf_counter()
        match = fts_texts[i]
        lex = [r[0] for r in con.execute(sql, (match, cand))] if match else []
        t1 = time.perf_counter()
        q = qvecs[i]
        qn = float(np.linalg.norm(q))
        scores = items @ (q / qn if qn > 0 else q)
        top = np.argpartition(-scores, cand - 1)[:cand] if cand < n else np.arange(n)
        top = top[np.lexsort((ids[top], -scores[top]))]
        vec = ids[top].tolist()
        t2 = time.perf_counter()
        fused = {}
        for lst in (lex, vec):
            for rank, d in enumerate(lst, 1):
                fused[d] = fused.get(d, 0.0) + 1.0 / (args.rrf_k + rank)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:args.k]
        t3 = time.perf_counter()
        return [d for d, _ in best], (t3 - t0, t1 - t0, t2 - t1, t3 - t2)

    for i in range(len(queries)):  # warm-up
        search(i)

    totals, fts_t, vec_t, fuse_t = [], [], [], []
    results = [None] * len(queries)
    for _ in range(args.runs):
        for i in range(len(queries)):
            res, (tt, tf, tv, tu) = search(i)
            results[i] = res
            totals.append(tt)
            fts_t.append(tf)
            vec_t.append(tv)
            fuse_t.append(tu)

    ms = lambda xs, p: round(float(np.percentile(np.array(xs) * 1e3, p)), 4)
    out = {
        "p50_ms": ms(totals, 50),
        "p95_ms": ms(totals, 95),
        "mean_ms": round(float(np.mean(totals)) * 1e3, 4),
        "fts_p50_ms": ms(fts_t, 50),
        "vec_p50_ms": ms(vec_t, 50),
        "fuse_p50_ms": ms(fuse_t, 50),
        "n_items": int(n),
        "n_queries": len(queries),
        "runs": args.runs,
        "k": args.k,
        "candidates": cand,
        "rrf_k": args.rrf_k,
        "dim": args.dim,
        "threads": args.threads,
        "sqlite": sqlite3.sqlite_version,
        "numpy": np.__version__,
    }
    if args.results_out:
        with open(args.results_out, "w", encoding="utf-8") as f:
            for i, res in enumerate(results):
                f.write(json.dumps({"query": i, "ids": res}) + "\n")
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{n} items, {len(queries)} queries x {args.runs} runs: p50 {out['p50_ms']} ms, "
              f"p95 {out['p95_ms']} ms (fts {out['fts_p50_ms']}, vectors {out['vec_p50_ms']}, "
              f"fusion {out['fuse_p50_ms']} ms at p50)")


if __name__ == "__main__":
    main()
