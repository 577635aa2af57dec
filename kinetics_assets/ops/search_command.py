"""`kinetics search`: clips by text (the embedding model's text tower) or like another clip, with
label and shard filters, printed as a table or as JSON.

A text query must be embedded by the model that made the table's vectors (cosine between two models'
spaces means nothing), so the model is the one the table's rows record, unless a setting names
another; a table embedded by random stand-in weights is said to be so, loudly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import lance
    import numpy as np

    from kinetics_assets.search import SearchHit

# Provenance columns the clip_embeddings stage writes beside each vector.
MODEL_COLUMNS = ("embedding_model", "embedding_model_revision", "embedding_pretrained")


def add_search_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private subparsers action type
    p = sub.add_parser("search", help="find clips by text or like another clip (vector search over the embeddings)")
    p.add_argument("text", nargs="?", help="what to look for, in words (the embedding model's text tower)")
    p.add_argument("--like", metavar="VIDEO_ID", help="clips like this one (its own embedding; itself left out)")
    p.add_argument("--top", type=int, default=20, help="hits to return (default 20)")
    p.add_argument("--label", action="append", help="only clips with this label (repeat for several)")
    p.add_argument("--shard", action="append", help="only clips of this shard (repeat for several)")
    p.add_argument("--status", default="ok", help="only rows with this status ('any': every row; default ok)")
    p.add_argument("--lance-uri", help="default: KINETICS_LANCE_URI or the data root's table")
    p.add_argument("--version", type=int, help="Lance version to search (default: latest)")
    p.add_argument("--json", action="store_true", help="print the hits as a JSON list")
    p.set_defaults(func=search_command)


def search_command(args: argparse.Namespace) -> int:
    from kinetics_assets.ops.cli import _settings_or_exit
    from kinetics_assets.search import SearchError, search_clips
    from kinetics_assets.settings import storage_options_from_env
    from kinetics_assets.table import open_table, table_exists

    if (args.text is None) == (args.like is None):
        print("kinetics search: give either TEXT or --like VIDEO_ID", file=sys.stderr)
        return 2
    settings = _settings_or_exit(required=not args.lance_uri)
    uri = args.lance_uri or (settings.lance_uri if settings is not None else "")
    options = storage_options_from_env()
    if not table_exists(uri, options):
        print(f"kinetics search: no Lance table at {uri}", file=sys.stderr)
        return 2
    vector = None
    if args.text is not None:
        from kinetics_assets.embed.model import EmbeddingModelUnavailable  # torch: only for a text query

        try:
            vector = text_vector(args.text, open_table(uri, options, version=args.version))
        except EmbeddingModelUnavailable as exc:
            print(f"kinetics search: {exc}", file=sys.stderr)
            return 2
    try:
        hits = search_clips(
            uri,
            vector=vector,
            like=args.like,
            top=args.top,
            labels=args.label,
            shards=args.shard,
            status=None if args.status == "any" else args.status,
            storage_options=options,
            version=args.version,
        )
    except (SearchError, ValueError) as exc:
        print(f"kinetics search: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([dataclasses.asdict(hit) for hit in hits], indent=2))
    else:
        print(format_hits(hits))
    return 0


def format_hits(hits: list[SearchHit]) -> str:
    if not hits:
        return "no clips matched"
    rows = [
        (
            str(rank),
            f"{hit.score:.3f}",
            hit.video_id,
            hit.label or "",
            hit.shard,
            "" if hit.time_start is None else f"{hit.time_start}-{hit.time_end}",
        )
        for rank, hit in enumerate(hits, 1)
    ]
    header = ("#", "score", "video_id", "label", "shard", "source s")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows])


def table_model(ds: lance.LanceDataset) -> tuple[str | None, str | None, bool | None]:
    """The model id, revision and pretrained flag the table's vectors were made with (the most common,
    when shards differ); None where the table records none.
    """
    present = [c for c in MODEL_COLUMNS if c in ds.schema.names]
    if not present:
        return None, None, None
    table = ds.to_table(columns=present, filter="embedding_status = 'ok'")
    if table.num_rows == 0:
        return None, None, None
    columns = {name: table[name].to_pylist() for name in present}
    counts = Counter(zip(*(columns.get(c, [None] * table.num_rows) for c in MODEL_COLUMNS), strict=True))
    (model_id, revision, pretrained), _ = counts.most_common(1)[0]
    if len({key[:2] for key in counts}) > 1:
        print(
            f"kinetics search: the table's vectors come from {len(counts)} models; the text is embedded "
            f"with the most common, {model_id}",
            file=sys.stderr,
        )
    return model_id, revision, pretrained


def text_vector(text: str, ds: lance.LanceDataset) -> np.ndarray:
    """The text's query vector, from the model that embedded the table (KINETICS_EMBEDDING_MODEL_*
    settings win).
    """
    from kinetics_assets.embed import text_query_vector
    from kinetics_assets.embed.model import EmbeddingModelConfig

    model_id, revision, pretrained = table_model(ds)
    fields: dict[str, Any] = {}
    if chosen := os.environ.get("KINETICS_EMBEDDING_MODEL_ID") or model_id:
        fields["model_id"] = chosen
    if chosen := os.environ.get("KINETICS_EMBEDDING_MODEL_REVISION") or revision:
        fields["revision"] = chosen
    if local := os.environ.get("KINETICS_EMBEDDING_MODEL_PATH"):
        fields["local_path"] = local
    if pretrained is False:
        print(
            "kinetics search: THE TABLE'S EMBEDDINGS CAME FROM RANDOMLY INITIALISED WEIGHTS "
            "(embedding_pretrained = false): text search over them finds nothing meaningful",
            file=sys.stderr,
        )
    return text_query_vector(text, config=EmbeddingModelConfig(**fields))
