"""The route a new user takes: every `dagster asset materialize` command the README documents, run as
written on a fresh instance, and the hint a step prints when its upstream is missing.

The first block (the one-run form) runs exactly as a user types it, its steps on Ray. The others run
the same command lines with KINETICS_EXECUTION=in_process (each step's per-clip work in the step's own
process): what they add is the order of the commands and the partition range, not Ray, which the first
block, tests/integration/test_ui_backfill.py and tests/integration/test_ray_*.py cover. Which selection
each hint gives is checked for every shard asset in tests/defs/test_missing_upstream_hints.py."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Literal

import dagster as dg
import pytest

from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model
from tests.harness.tiny_whisper import save_tiny_whisper_model

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PARTITION = "k700_val_001"  # the README's example partitions: the test shards are named so
SHARDS = ("k700_val_001", "k700_val_002")
RAY_BLOCKS = frozenset({0})  # README blocks whose steps run on Ray, as typed; the others in process


def readme_command_blocks() -> list[list[str]]:
    """`dagster asset materialize` lines of each ```bash block of the README, in order, as argv."""
    text = (REPO / "README.md").read_text()
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        commands = [line.strip() for line in block.splitlines() if "dagster asset materialize" in line]
        if commands:
            blocks.append([shlex.split(line.split("#", 1)[0]) for line in commands])
    return blocks


def readme_inline_commands() -> list[list[str]]:
    """`dagster asset materialize ...` written inline in the README's prose (between backticks)."""
    text = (REPO / "README.md").read_text()
    return [shlex.split(c) for c in re.findall(r"`(dagster asset materialize [^`]+)`", text)]


def _argv(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """The variables a command line sets (`NAME=value ...`) and the command itself."""
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        name, value = words[0].split("=", 1)
        env[name] = value
        words = words[1:]
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    assert words[0] == "dagster", words
    return env, [str(BIN / "dagster"), *words[1:]]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme_served")
    specs = [
        build_shard(root, name, n_clips=2, layout="class_folders", with_defects=False, clip_seconds=0.5, seed=i)
        for i, name in enumerate(SHARDS)
    ]
    with FaultyFileServer(root) as server:
        yield server, specs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_depth_model(tmp_path_factory.mktemp("readme_model") / "tiny-depth")


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    return save_tiny_whisper_model(tmp_path_factory.mktemp("readme_whisper") / "tiny-whisper")


def _fresh_env(
    tmp_path: Path,
    served,
    tiny_model: Path,
    ray_head,
    tiny_whisper: Path | None = None,
    *,
    execution: Literal["ray", "in_process"] = "ray",
) -> dict[str, str]:
    """A fresh instance and data root, configured the way the README says (plus a local shard and
    the tiny depth and speech models; on Ray, steps join one running head to save its start-up per step)."""
    server, specs = served
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_bytes((REPO / "dagster_home" / "dagster.yaml").read_bytes())
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("".join(server.url(spec.archive_path.name) + "\n" for spec in specs))
    env = {k: v for k, v in ray_head.client_env.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        KINETICS_MANIFEST=str(manifest),
        KINETICS_DATA_ROOT=str(tmp_path / "data"),
        KINETICS_DEPTH_MODEL_PATH=str(tiny_model),
        HF_HUB_OFFLINE="1",
    )
    if tiny_whisper is not None:
        env["KINETICS_SPEECH_MODEL_PATH"] = str(tiny_whisper)
    if execution == "in_process":
        env["KINETICS_EXECUTION"] = "in_process"
    return env


def _run(env: dict[str, str], command: tuple[dict[str, str], list[str]]) -> subprocess.CompletedProcess:
    extra, argv = command
    return subprocess.run(
        argv, cwd=REPO, env={**env, **extra}, check=False, capture_output=True, text=True, timeout=600
    )


def _materialized(env: dict[str, str]) -> set[str]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return {
            key.to_user_string()
            for key in (
                dg.AssetKey(a) for a in ("raw_archives", "transcoded_videos", "depth_maps", "transcripts", "qa_report")
            )
            if instance.get_latest_materialization_event(key) is not None
        }


def test_readme_documents_working_selections():
    blocks = readme_command_blocks()
    selections = [words[words.index("--select") + 1] for block in blocks for words in block]
    assert "*depth_maps" in selections
    assert "+depth_maps" not in selections
    assert "transcripts" in selections
    assert len(blocks) == 3, blocks  # the one-run form, one asset at a time, and a range of shards


def test_each_readme_block_on_a_fresh_instance(tmp_path, served, tiny_model, tiny_whisper, ray_head):
    inline = readme_inline_commands()
    assert any("qa_report" in words for words in inline), inline
    blocks = readme_command_blocks()
    assert set(range(len(blocks))) > RAY_BLOCKS  # one block on Ray, not all
    for i, block in enumerate(blocks):
        execution = "ray" if i in RAY_BLOCKS else "in_process"
        env = _fresh_env(tmp_path / f"instance{i}", served, tiny_model, ray_head, tiny_whisper, execution=execution)
        for words in block:
            proc = _run(env, _argv(words))
            output = proc.stdout + proc.stderr
            assert proc.returncode == 0, f"{shlex.join(words)} failed:\n{output[-4000:]}"
            # The steps ran where the block says: on the running Ray head, or with no Ray at all.
            on_ray = f"Ray cluster at {ray_head.address}" in output
            assert on_ray == (execution == "ray"), f"{shlex.join(words)} ({execution}):\n{output[-4000:]}"
        assert _materialized(env) == {"raw_archives", "transcoded_videos", "depth_maps", "transcripts"}, block
        if i == 0:  # the table now has a shard: the inline qa_report command, as documented
            for words in inline:
                proc = _run(env, _argv(words))
                assert proc.returncode == 0, f"{shlex.join(words)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
            assert "qa_report" in _materialized(env)


def test_missing_upstream_hint_is_the_readmes_one_run_selection(tmp_path, served, tiny_model, tiny_whisper, ray_head):
    """`--select depth_maps` alone on a fresh instance fails, naming the partition and the README's
    one-run selection."""
    env = _fresh_env(tmp_path, served, tiny_model, ray_head, tiny_whisper, execution="in_process")
    words = ["dagster", "asset", "materialize", "-m", "kinetics_assets.definitions", "--select", "depth_maps"]
    proc = _run(env, _argv([*words, "--partition", PARTITION]))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert PARTITION in output, output[-3000:]
    hint = re.search(r"select '([^']+)' to include", output)
    assert hint is not None, output[-3000:]
    assert hint.group(1) == "*depth_maps", hint.group(0)
    assert _materialized(env) == set()
    documented = [w[w.index("--select") + 1] for block in readme_command_blocks() for w in block]
    assert hint.group(1) in documented
