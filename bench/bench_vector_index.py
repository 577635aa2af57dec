"""The embedding index on synthetic clip embeddings: recall@10 against exact search, query latency on
one core, build and incremental-update times, for IVF_HNSW_SQ and IVF_PQ side by side, with exact
search (no index) measured in the same run as the baseline.

The vectors are clustered the way clip embeddings are (topics, sub-topics within them, clips near a
sub-topic; float16 as stored), not uniform noise, so that neighbours mean something and recall can
fall short. They go into a real table through the project's own writes: shards committed by
`commit_shard`, the embedding column set per shard by `write_columns`, as the clip_embeddings stage
does. The index is built on all shards but the last through `update_index`; the last shard then
lands and `update_index` adds it (a delta segment). Recall is measured on held-out query vectors
(new clips near the same sub-topics) against the exact top 10 (numpy over the stored float16
vectors), and on the table's own vectors (what `--like` asks). Latency: one process pinned to one
core with Lance's compute pool at one thread; each query's wall time and the process's CPU time
(which other jobs on a shared machine do not inflate).

    uv run python bench/bench_vector_index.py [--rows 100000] [--width 768] [--json bench/results/vector_index.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One core for everything timed here, Lance's compute pool included (read when Lance starts).
os.environ.setdefault("LANCE_CPU_THREADS", "1")
os.environ.setdefault("LANCE_LOG", "error")

import numpy as np
import pyarrow as pa

from kinetics_assets.search import IndexConfig, SearchTuning, search_clips, update_index
from kinetics_assets.search.query import open_for_search
from kinetics_assets.table import (
    add_missing_columns,
    commit_shard,
    open_table,
    write_columns,
    write_shard_fragments,
)


def clustered(rng: np.random.Generator, n: int, width: int, topics: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """n clips: a sub-topic drawn (Zipf-like over topics), plus per-clip noise; unit vectors."""
    weights = 1.0 / np.arange(1, len(topics) + 1)
    topic = rng.choice(len(topics), size=n, p=weights / weights.sum())
    which = topic * sub.shape[1] + rng.integers(0, sub.shape[1], size=n)
    centres = sub.reshape(-1, width)[which]
    vectors = centres + 0.45 * rng.normal(size=(n, width)).astype(np.float32) / np.sqrt(width)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def make_centres(rng: np.random.Generator, width: int, n_topics: int, per_topic: int) -> tuple[np.ndarray, np.ndarray]:
    topics = rng.normal(size=(n_topics, width)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    sub = topics[:, None, :] + 0.6 * rng.normal(size=(n_topics, per_topic, width)).astype(np.float32) / np.sqrt(width)
    sub /= np.linalg.norm(sub, axis=2, keepdims=True)
    return topics, sub


def write_shard(uri: str, shard: str, vectors: np.ndarray, first: int) -> tuple[str, list[str]]:
    ids = [f"v{first + i:07d}" for i in range(len(vectors))]
    rows = [
        {"video_id": v, "shard": shard, "label": f"topic{i % 50}", "status": "ok", "video": b"x"}
        for i, v in enumerate(ids)
    ]
    commit_shard(uri, shard, write_shard_fragments(rows, uri), properties={"step": "bench"})
    width = vectors.shape[1]
    add_missing_columns(
        uri,
        None,
        pa.schema([pa.field("embedding", pa.list_(pa.float16(), width)), pa.field("embedding_status", pa.string())]),
        "the embedding columns",
    )
    flat = pa.array(vectors.astype(np.float16).ravel(), pa.float16())
    table = pa.table(
        {
            "video_id": ids,
            "embedding": pa.FixedSizeListArray.from_arrays(flat, width),
            "embedding_status": ["ok"] * len(ids),
        }
    )
    write_columns(uri, table, "bench embeddings")
    return shard, ids


def exact_top(stored: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ stored.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def run_queries(
    uri: str, queries: np.ndarray, tuning: SearchTuning, k: int, *, bare: bool = False
) -> tuple[list[list[str]], Timings]:
    """Each query's hits, and its wall ms and CPU ms: the process's CPU time, all its threads, which on
    one pinned core is what the query costs that core, whatever else the machine runs.

    `search_clips` (the status prefilter, the hit's columns, the table opened per query), or with
    `bare` the index query alone on an open table (no filter, ids only).
    """
    found, timings = [], Timings()
    ds = open_for_search(uri)
    for q in queries:
        started, cpu_started = time.perf_counter(), time.process_time()
        if bare:
            table = ds.to_table(columns=["video_id"], nearest=tuning.nearest(q, k), disable_scoring_autoprojection=True)
            hit_ids = table["video_id"].to_pylist()
        else:
            hit_ids = [h.video_id for h in search_clips(uri, vector=q, top=k, tuning=tuning)]
        timings.wall_ms.append((time.perf_counter() - started) * 1e3)
        timings.cpu_ms.append((time.process_time() - cpu_started) * 1e3)
        found.append(hit_ids)
    return found, timings


@dataclass
class Timings:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(float(np.percentile(self.wall_ms, 50)), 2),
            "p95_ms": round(float(np.percentile(self.wall_ms, 95)), 2),
            "cpu_p50_ms": round(float(np.percentile(self.cpu_ms, 50)), 2),
            "cpu_p95_ms": round(float(np.percentile(self.cpu_ms, 95)), 2),
        }


def recall(found: list[list[str]], truth: np.ndarray, ids: list[str], k: int) -> float:
    return float(np.mean([len(set(f) & {ids[j] for j in t[:k]}) / k for f, t in zip(found, truth, strict=True)]))


def say(text: str) -> None:
    print(text, flush=True)


def build_and_update(uri: str, vectors: np.ndarray, per_shard: list[np.ndarray], config: IndexConfig) -> dict[str, Any]:
    """Every shard but the last, the index built, the last shard, the index updated: the figures."""
    shutil.rmtree(uri, ignore_errors=True)
    started = time.perf_counter()
    for s, idx in enumerate(per_shard[:-1]):
        write_shard(uri, f"shard_{s:02d}", vectors[idx], int(idx[0]))
    write_s = time.perf_counter() - started
    built = update_index(uri, config=config)
    last = per_shard[-1]
    write_shard(uri, f"shard_{len(per_shard) - 1:02d}", vectors[last], int(last[0]))
    updated = update_index(uri, config=config)
    index_bytes = sum(f.stat().st_size for f in Path(uri, "_indices").rglob("*") if f.is_file())
    return {
        "write_s": round(write_s, 1),
        "build": {"action": built.action, "rows": built.after.indexed_rows, "seconds": round(built.seconds, 2)},
        "update": {
            "action": updated.action,
            "rows_added": len(last),
            "seconds": round(updated.seconds, 2),
            "segments": updated.after.segments,
            "unindexed_after": updated.after.unindexed_rows,
        },
        "partitions": built.after.partitions,
        "index_mib": round(index_bytes / 2**20, 1),
        "rows": open_table(uri).count_rows(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--shards", type=int, default=10, help="the last one lands after the index is built")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=30, help="queries timed through exact search")
    parser.add_argument("--types", nargs="+", default=["IVF_HNSW_SQ", "IVF_PQ"])
    parser.add_argument("--rows-per-partition", type=int, default=IndexConfig().rows_per_partition)
    parser.add_argument("--nprobes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--refine", type=int, default=20, help="refine_factor for IVF_PQ")
    parser.add_argument(
        "--hnsw-refine", type=int, nargs="*", default=[], help="refine_factors also tried for IVF_HNSW_SQ"
    )
    parser.add_argument("--work", help="folder for the table (default: a temporary one)")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    k = 10
    rng = np.random.default_rng(0)
    topics, sub = make_centres(rng, args.width, n_topics=200, per_topic=10)
    vectors = clustered(rng, args.rows, args.width, topics, sub)
    held_out = clustered(rng, args.queries, args.width, topics, sub)
    own = vectors[rng.choice(args.rows, size=args.queries, replace=False)]
    stored = vectors.astype(np.float16).astype(np.float32)
    ids = [f"v{i:07d}" for i in range(args.rows)]
    truth_held = exact_top(stored, held_out, k)
    truth_own = exact_top(stored, own.astype(np.float16).astype(np.float32), k)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_vector_index_"))
    say(f"{args.rows} vectors of width {args.width} in {args.shards} shards; one core; load {os.getloadavg()}")

    types: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {
        "rows": args.rows,
        "width": args.width,
        "queries": args.queries,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "loadavg_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
        "types": types,
    }
    per_shard = np.array_split(np.arange(args.rows), args.shards)
    uri = ""
    for index_type in args.types:
        uri = str(work / f"{index_type}.lance")
        config = IndexConfig(index_type=index_type, min_rows=10_000, rows_per_partition=args.rows_per_partition)
        entry = build_and_update(uri, vectors, per_shard, config)
        say(
            f"{index_type}: write {entry['write_s']} s, build {entry['build']['seconds']} s "
            f"({entry['partitions']} partitions), update +{entry['update']['rows_added']} rows "
            f"{entry['update']['seconds']} s, index {entry['index_mib']} MiB"
        )
        entry["tunings"] = []
        refines = [args.refine] if index_type == "IVF_PQ" else [None, *args.hnsw_refine]
        for nprobes, refine in itertools.product(args.nprobes, refines):
            tuning = SearchTuning(nprobes=nprobes, refine_factor=refine)
            run_queries(uri, held_out[:5], tuning, k)  # the index into the process's cache
            found, timings = run_queries(uri, held_out, tuning, k)
            found_own, _ = run_queries(uri, own, tuning, k)
            _, bare = run_queries(uri, held_out, tuning, k, bare=True)
            row = {
                "nprobes": nprobes,
                "ef": tuning.ef,
                "refine_factor": tuning.refine_factor,
                "recall_held_out": round(recall(found, truth_held, ids, k), 4),
                "recall_own": round(recall(found_own, truth_own, ids, k), 4),
                **timings.summary(),
                "bare": bare.summary(),
            }
            entry["tunings"].append(row)
            say(f"  {row}")
        types[index_type] = entry
    # Baseline: exact search (the index bypassed) over the same table, in the same process.
    exact = SearchTuning(exact=True)
    found, timings = run_queries(uri, held_out[: args.exact_queries], exact, k)
    _, bare = run_queries(uri, held_out[: args.exact_queries], exact, k, bare=True)
    results["exact"] = {
        "queries": args.exact_queries,
        "recall_held_out": round(recall(found, truth_held[: args.exact_queries], ids, k), 4),
        **timings.summary(),
        "bare": bare.summary(),
    }
    say(f"exact (index bypassed): {results['exact']}")
    results["loadavg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
