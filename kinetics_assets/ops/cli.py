"""`kinetics` command line: the demo on an embedded sample shard, QA queries and shard status.

The demo builds a small Kinetics-style shard, serves it on loopback so the real HTTP download path
runs, and materializes every asset for it through Dagster into the local instance. `qa` runs the
canned DuckDB queries (or one of yours) over the Lance table; `status` shows where each shard stands;
`search` finds clips by text or like another clip (ops/search_command.py).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast, overload

if TYPE_CHECKING:
    from collections.abc import Iterator

    import dagster as dg

    from kinetics_assets.settings import Settings

SAMPLE_SHARD = "sample_val_001"


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve a folder over HTTP on 127.0.0.1 (an ephemeral port) for the duration of the block."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature fixed by the base class
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _default_dagster_home() -> Path:
    here = Path.cwd() / "dagster_home"
    return here if (here / "dagster.yaml").exists() else Path(__file__).resolve().parent.parent / "dagster_home"


def demo(args: argparse.Namespace) -> int:
    from kinetics_assets.ops.sample import build_sample_shard

    data_root = Path(args.data_root).resolve()
    os.environ.setdefault("DAGSTER_HOME", str(_default_dagster_home().resolve()))
    sample_dir = data_root / "sample"
    archive = sample_dir / f"{SAMPLE_SHARD}.tar.gz"
    if not archive.exists():
        print(f"Building the sample shard in {sample_dir} ...")
        build_sample_shard(sample_dir, SAMPLE_SHARD)
    with serve_folder(sample_dir) as base_url:
        manifest = sample_dir / "sample_manifest.txt"
        manifest.write_text(f"# The demo's sample shard, served on loopback\n{base_url}{archive.name}\n")
        os.environ.update(
            KINETICS_MANIFEST=str(manifest),
            KINETICS_ANNOTATIONS_URL=f"{base_url}annotations.csv",
            KINETICS_DATA_ROOT=str(data_root),
        )
        os.environ.pop("KINETICS_RELEASE", None)
        # Without network the real depth weights cannot be had; the demo then runs a random stand-in
        # model, says so below, and the table records it (depth_pretrained = false).
        os.environ.setdefault("KINETICS_DEPTH_ALLOW_RANDOM_WEIGHTS", "1")
        # Likewise Whisper: a tiny random stand-in (transcript_pretrained = false), said so below.
        os.environ.setdefault("KINETICS_SPEECH_ALLOW_RANDOM_WEIGHTS", "1")
        # And the image-text model: a tiny random SigLIP (embedding_pretrained = false), said so below.
        os.environ.setdefault("KINETICS_EMBEDDING_ALLOW_RANDOM_WEIGHTS", "1")
        import dagster as dg

        from kinetics_assets import definitions
        from kinetics_assets.defs.pipeline import PARTITIONED_ASSETS, TABLE_ASSETS
        from kinetics_assets.settings import Settings

        # The definitions as Dagster builds them, from the environment just set.
        defs, settings = definitions.defs(), Settings.from_env()
        assets = {a.key.to_user_string(): a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)}
        instance = dg.DagsterInstance.get()
        print(
            f"Materializing {', '.join(PARTITIONED_ASSETS)} for shard "
            f"{SAMPLE_SHARD} into the Dagster instance at {os.environ['DAGSTER_HOME']}"
        )
        result = dg.materialize(
            [assets[name] for name in PARTITIONED_ASSETS],
            partition_key=SAMPLE_SHARD,
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
    random_weights = _print_result(result)
    _print_transcripts(result)
    # The table assets read every shard, so they run on their own, after the shard's run.
    print(f"Materializing {', '.join(TABLE_ASSETS)} over the whole table")
    qa_result = dg.materialize(
        [assets[name] for name in TABLE_ASSETS], instance=instance, resources=defs.resources, raise_on_error=False
    )
    _print_result(qa_result)
    if "depth_maps" in random_weights:
        _banner(
            "depth_maps ran a RANDOMLY INITIALISED stand-in model: the depth weights could not be found or",
            "downloaded. The depth in this table is NOT meaningful (column depth_pretrained = false).",
            "Provide the weights (see README, 'Depth model') and re-materialize depth_maps.",
        )
    if "transcripts" in random_weights:
        _banner(
            "transcripts ran a RANDOMLY INITIALISED stand-in Whisper: the speech weights could not be found",
            "or downloaded. Any transcript text is NOT meaningful (column transcript_pretrained = false).",
            "Provide the weights (see README, 'Speech model') and re-materialize transcripts with force.",
        )
    if "clip_embeddings" in random_weights:
        _banner(
            "clip_embeddings ran a RANDOMLY INITIALISED stand-in SigLIP: the embedding weights could not be",
            "found or downloaded. The embeddings, and any search over them, are NOT meaningful (column",
            "embedding_pretrained = false). Provide the weights (README, 'Embedding model') and re-materialize.",
        )
    print(f"Lance table: {settings.lance_uri}")
    print(f"Browse it: DAGSTER_HOME={os.environ['DAGSTER_HOME']} uv run dagster dev -w workspace.yaml")
    print("\nQA summary (kinetics qa):\n")
    qa_code = print_qa(settings.lance_uri, annotations=_cached_annotations(settings))
    return 0 if result.success and qa_result.success and qa_code == 0 else 1


def _banner(*lines: str) -> None:
    print("\n" + "!" * 100)
    for line in lines:
        print(f"!! {line}")
    print("!" * 100 + "\n")


def _print_result(result: dg.ExecuteInProcessResult) -> set[str]:
    """Print materializations and check outcomes; the assets that ran a model with random weights."""
    random_weights: set[str] = set()
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        partition = f" [{mat.partition}]" if mat.partition else ""
        print(f"  materialized {mat.asset_key.to_user_string()}{partition}")
        pretrained = mat.metadata.get("pretrained_weights")
        if pretrained is not None and pretrained.value is False:
            random_weights.add(mat.asset_key.to_user_string())
    for evaluation in result.get_asset_check_evaluations():
        outcome = "passed" if evaluation.passed else "FAILED"
        print(f"  check {evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {outcome}")
    return random_weights


def _print_transcripts(result: dg.ExecuteInProcessResult) -> None:
    """The transcripts' summary of each materialized partition, from its metadata."""
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() != "transcripts":
            continue
        meta = {k: v.value for k, v in mat.metadata.items()}
        statuses = ", ".join(f"{k.removeprefix('status_')} {v}" for k, v in meta.items() if k.startswith("status_"))
        # The step records its language counts as a JSON mapping; Dagster types any value as any JSON.
        language_counts = cast("dict[str, int]", meta["languages"])
        languages = ", ".join(f"{k} {v}" for k, v in sorted(language_counts.items())) or "none"
        print(
            f"\nTranscripts [{mat.partition}]: {meta['clips']} clips ({statuses}); {meta['clips_with_speech']} with "
            f"speech; languages: {languages}; {meta['audio_s']:g} s of audio at {meta['real_time_factor']:g}x "
            f"real time; model {meta['model_id']} on {meta['device']} (pretrained: {meta['pretrained_weights']})"
        )


@overload
def _settings_or_exit(*, required: Literal[True] = True) -> Settings: ...
@overload
def _settings_or_exit(*, required: bool) -> Settings | None: ...
def _settings_or_exit(*, required: bool = True) -> Settings | None:
    """Settings from the environment; a bad setting ends the command unless it is not `required`."""
    from kinetics_assets.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        if not required:
            return None
        print(f"kinetics: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _cached_annotations(settings: Settings) -> Path | None:
    """The annotations CSV raw_archives/transcoded_videos cached, if any (never downloaded here)."""
    from kinetics_assets.ingest.layout import annotations_path

    url = settings.annotations_url
    if not url or "://" in settings.data_root:
        return None
    path = annotations_path(settings.data_root, settings.release, url)
    return path if path.is_file() else None


def print_qa(
    lance_uri: str,
    *,
    version: int | None = None,
    annotations: Path | None = None,
    sql: str | None = None,
    only: str | None = None,
    max_rows: int | None = 20,
) -> int:
    """Print every canned QA query (or the one named `only`, or one ad-hoc query) over the table; the exit code."""
    import duckdb

    from kinetics_assets import qa
    from kinetics_assets.ingest.annotations import AnnotationsError
    from kinetics_assets.settings import SettingsError, storage_options_from_env

    try:
        options = storage_options_from_env()
        ds = qa.open_dataset(lance_uri, options, version=version)
        con = qa.connect(ds, annotations, storage_options=options)
    except (qa.QaError, SettingsError, AnnotationsError, OSError) as exc:
        print(f"kinetics qa: {exc}", file=sys.stderr)
        return 2
    if sql:
        try:
            print(qa.format_table(qa.query(con, sql), max_rows))
        except duckdb.Error as exc:
            views = "videos, failures, depth, transcripts, near_duplicates" + (", annotations" if annotations else "")
            print(f"kinetics qa: query failed ({views} are the views): {exc}", file=sys.stderr)
            return 2
        return 0
    print(
        f"Lance table {lance_uri} at version {ds.version}"
        + (f", annotations {annotations}" if annotations else " (no annotations CSV: labels are those present)")
    )
    print()
    if only is not None:
        if only not in qa.QUERIES:
            print(f"kinetics qa: no query {only!r}; one of {', '.join(qa.QUERIES)}", file=sys.stderr)
            return 2
        print(qa.format_report({only: qa.query(con, qa.QUERIES[only])}, max_rows))
        return 0
    print(qa.format_report(qa.run_qa(con), max_rows))
    return 0


def qa_command(args: argparse.Namespace) -> int:
    # With --lance-uri the settings only find the cached annotations, so a bad setting is no reason to stop.
    settings = _settings_or_exit(required=not args.lance_uri)
    uri = args.lance_uri or (settings.lance_uri if settings is not None else "")
    annotations = None
    if args.annotations and args.annotations != "none":
        annotations = Path(args.annotations)
    elif args.annotations is None and settings is not None:
        annotations = _cached_annotations(settings)
    return print_qa(
        uri,
        version=args.version,
        annotations=annotations,
        sql=args.sql,
        only=args.query,
        max_rows=None if args.max_rows <= 0 else args.max_rows,
    )


def status_command(args: argparse.Namespace) -> int:
    from kinetics_assets.ingest.shards import ManifestError, load_shards

    settings = _settings_or_exit()
    try:
        keys = list(load_shards(settings))
    except (ManifestError, OSError) as exc:
        print(
            f"kinetics status: cannot list the shards of {settings.manifest or settings.release}: {exc}",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("DAGSTER_HOME", str(_default_dagster_home().resolve()))
    import dagster as dg

    from kinetics_assets.ops.status import shard_status
    from kinetics_assets.qa import format_table
    from kinetics_assets.settings import storage_options_from_env

    uri = args.lance_uri or settings.lance_uri
    with dg.DagsterInstance.get() as instance:
        table = shard_status(instance, keys, uri, storage_options_from_env(), only_active=args.active)
    print(
        f"{len(keys)} shards in {settings.manifest or settings.release}; table {uri}; "
        f"Dagster instance {os.environ['DAGSTER_HOME']}"
    )
    print(format_table(table, None if args.max_rows <= 0 else args.max_rows))
    return 0


def release_dead_runs_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("DAGSTER_HOME", str(_default_dagster_home().resolve()))
    import dagster as dg

    from kinetics_assets.ops.dead_runs import find_dead_runs, release_run

    with dg.DagsterInstance.get() as instance:
        dead = find_dead_runs(instance)
        if not dead:
            print(f"No dead runs in the Dagster instance at {os.environ['DAGSTER_HOME']}.")
            return 0
        for run in dead:
            print(
                f"run {run.run_id} ({run.status}, partition {run.partition or '-'}): "
                f"its processes {', '.join(map(str, run.pids))} are gone from this machine"
            )
            if args.yes:
                release_run(
                    instance, run.run_id, "its run process was killed; released by `kinetics release-dead-runs`"
                )
        print(
            f"Released {len(dead)} run(s)."
            if args.yes
            else "Re-run with --yes to mark them canceled and free their pool slots."
        )
    return 0


def cleanup_command(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from kinetics_assets.qa import QaError, open_dataset
    from kinetics_assets.settings import storage_options_from_env
    from kinetics_assets.table import cleanup_old_versions, versions_to_clean_up

    settings = _settings_or_exit(required=not args.lance_uri)
    uri = args.lance_uri or (settings.lance_uri if settings is not None else "")
    options = storage_options_from_env()
    older_than = timedelta(days=args.older_than_days)
    try:
        ds = open_dataset(uri, options)
    except (QaError, OSError) as exc:
        print(f"kinetics cleanup: {exc}", file=sys.stderr)
        return 2
    doomed = versions_to_clean_up(uri, options, older_than, keep_tagged=not args.drop_old_tags)
    tags = {name: tag["version"] for name, tag in ds.tags.list().items()}
    print(
        f"Lance table {uri}: {len(ds.versions())} version(s), latest {ds.version}"
        + (f", tags {', '.join(f'{n}={v}' for n, v in sorted(tags.items()))}" if tags else "")
    )
    print(f"Versions older than {args.older_than_days:g} day(s) to remove: {_ranges(doomed) or 'none'}")
    if not args.yes:
        print(
            "Re-run with --yes to remove them and the files only they use. A reader pinned to a removed "
            "version breaks: tag the versions training runs depend on."
        )
        return 0
    result = cleanup_old_versions(
        uri, options, older_than, keep_tagged=not args.drop_old_tags, delete_unverified=args.delete_unverified
    )
    print(
        f"Removed {result.versions_removed} version(s), {result.data_files_removed} data file(s), "
        f"{result.bytes_removed / 1e6:.1f} MB"
        + (f"; tags removed: {', '.join(result.tags_removed)}" if result.tags_removed else "")
        + f". Versions left: {_ranges(result.versions_left)}"
    )
    return 0


def _ranges(versions: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts: list[str] = []
    last = -2
    for v in sorted(versions):
        if parts and v == last + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{v}"
        else:
            parts.append(str(v))
        last = v
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinetics", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run every asset on an embedded sample shard served on loopback")
    p_demo.add_argument("--data-root", default=os.environ.get("KINETICS_DATA_ROOT", "data"))
    p_demo.set_defaults(func=demo)

    p_qa = sub.add_parser(
        "qa",
        help="QA queries over the Lance table "
        "(DuckDB views videos, failures, depth, transcripts, near_duplicates, annotations)",
    )
    p_qa.add_argument(
        "query", nargs="?", help="show only this canned query (e.g. near_duplicates, black_or_frozen; default: all)"
    )
    p_qa.add_argument("--lance-uri", help="default: KINETICS_LANCE_URI or the data root's table")
    p_qa.add_argument("--version", type=int, help="Lance version to read (default: latest)")
    p_qa.add_argument("--sql", help="run this one query over the views instead of the canned ones")
    p_qa.add_argument(
        "--annotations",
        help="annotations CSV to compare labels with ('none' to skip; "
        "default: the cached copy under the data root, if any)",
    )
    p_qa.add_argument("--max-rows", type=int, default=20, help="rows shown per table (0: all)")
    p_qa.set_defaults(func=qa_command)

    p_status = sub.add_parser(
        "status", help="per shard: downloaded, transcoded, depth, last run (table + Dagster instance)"
    )
    p_status.add_argument("--active", action="store_true", help="only shards with any state (download, rows or run)")
    p_status.add_argument("--lance-uri", help="default: KINETICS_LANCE_URI or the data root's table")
    p_status.add_argument("--max-rows", type=int, default=0, help="rows shown (0: all)")
    p_status.set_defaults(func=status_command)

    p_dead = sub.add_parser("release-dead-runs", help="cancel runs whose process was killed and free their pool slots")
    p_dead.add_argument("--yes", action="store_true", help="release them (default: only list them)")
    p_dead.set_defaults(func=release_dead_runs_command)

    p_clean = sub.add_parser("cleanup", help="remove old Lance table versions and the files only they use")
    p_clean.add_argument("--lance-uri", help="default: KINETICS_LANCE_URI or the data root's table")
    p_clean.add_argument("--older-than-days", type=float, default=7.0, help="keep versions newer than this (default 7)")
    p_clean.add_argument(
        "--drop-old-tags", action="store_true", help="also remove tagged versions past the cutoff (and their tags)"
    )
    p_clean.add_argument(
        "--delete-unverified",
        action="store_true",
        help="also remove files of killed runs younger than 7 days (only while nothing writes to the table)",
    )
    p_clean.add_argument("--yes", action="store_true", help="remove them (default: only list them)")
    p_clean.set_defaults(func=cleanup_command)

    from kinetics_assets.ops.search_command import add_search_parser

    add_search_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
