"""`kinetics` command line: the demo on an embedded sample shard.

The demo builds a small Kinetics-style shard, serves it on loopback so the real HTTP download path
runs, and materializes every asset for it through Dagster into the local instance.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

SAMPLE_SHARD = "sample_val_001"


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve a folder over HTTP on 127.0.0.1 (an ephemeral port) for the duration of the block."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by the base class
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
    from kinetics_assets.sample import build_sample_shard

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
        import dagster as dg

        from kinetics_assets import definitions

        instance = dg.DagsterInstance.get()
        print(f"Materializing {', '.join(a.key.to_user_string() for a in definitions.ASSETS)} for shard "
              f"{SAMPLE_SHARD} into the Dagster instance at {os.environ['DAGSTER_HOME']}")
        result = dg.materialize(
            definitions.ASSETS,
            partition_key=SAMPLE_SHARD,
            instance=instance,
            resources=definitions.RESOURCES,
            raise_on_error=False,
        )
    random_weights = False
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        print(f"  materialized {mat.asset_key.to_user_string()} [{mat.partition}]")
        pretrained = mat.metadata.get("pretrained_weights")
        random_weights |= pretrained is not None and pretrained.value is False
    for event in result.get_asset_check_evaluations():
        print(f"  check {event.asset_key.to_user_string()}.{event.check_name}: {'passed' if event.passed else 'FAILED'}")
    if random_weights:
        print("\n" + "!" * 100)
        print("!! depth_maps ran a RANDOMLY INITIALISED stand-in model: the depth weights could not be found or")
        print("!! downloaded. The depth in this table is NOT meaningful (column depth_pretrained = false).")
        print("!! Provide the weights (see README, 'Depth model') and re-materialize depth_maps.")
        print("!" * 100 + "\n")
    print(f"Lance table: {definitions.SETTINGS.lance_uri}")
    print(f"Browse it: DAGSTER_HOME={os.environ['DAGSTER_HOME']} uv run dagster dev -w workspace.yaml")
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinetics", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run every asset on an embedded sample shard served on loopback")
    p_demo.add_argument("--data-root", default=os.environ.get("KINETICS_DATA_ROOT", "data"))
    p_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
