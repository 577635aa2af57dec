"""A shard asset selected alone, before its upstream exists, fails with a hint naming the partition and a
selection that covers everything it needs, checked against the project's own asset graph. Built and run
as Dagster builds the code location, in this process (KINETICS_EXECUTION=in_process); the same hint
through `dagster asset materialize` is tests/integration/test_readme_commands.py's."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import dagster as dg
import pytest

from kinetics_assets import definitions
from tests.harness.tiny_depth import save_tiny_depth_model
from tests.harness.tiny_whisper import save_tiny_whisper_model

if TYPE_CHECKING:
    from pathlib import Path

PARTITION = "k700_val_001"
NEEDED = {
    "depth_maps": {"raw_archives", "transcoded_videos", "depth_maps"},
    "transcoded_videos": {"raw_archives", "transcoded_videos"},
    "transcripts": {"raw_archives", "transcoded_videos", "transcripts"},
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """The steps load their model before they read the table: tiny local ones, offline."""
    root = tmp_path_factory.mktemp("hint_models")
    return save_tiny_depth_model(root / "tiny-depth"), save_tiny_whisper_model(root / "tiny-whisper")


@pytest.fixture
def code_location(tmp_path, monkeypatch, tiny_models) -> dg.Definitions:
    """The definitions for a fresh data root whose manifest lists the partition (never downloaded)."""
    for name in [k for k in os.environ if k.startswith("KINETICS_")]:
        monkeypatch.delenv(name)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text((tmp_path / "served" / f"{PARTITION}.tar.gz").as_uri() + "\n")
    monkeypatch.setenv("KINETICS_MANIFEST", str(manifest))
    monkeypatch.setenv("KINETICS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("KINETICS_EXECUTION", "in_process")
    monkeypatch.setenv("KINETICS_DEPTH_MODEL_PATH", str(tiny_models[0]))
    monkeypatch.setenv("KINETICS_SPEECH_MODEL_PATH", str(tiny_models[1]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return definitions.defs()


@pytest.mark.parametrize("asset", sorted(NEEDED))
def test_missing_upstream_hint_selects_what_the_asset_needs(code_location, asset):
    assets = {a.key.to_user_string(): a for a in code_location.assets or () if isinstance(a, dg.AssetsDefinition)}
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [assets[asset]],
            partition_key=PARTITION,
            instance=instance,
            resources=code_location.resources,
            raise_on_error=False,
        )
    assert not result.success
    assert result.get_asset_materialization_events() == []
    messages = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert messages, f"{asset} failed without a step failure"
    message = "\n".join(messages)
    assert PARTITION in message, message
    hint = re.search(r"select '([^']+)' to include", message)
    assert hint is not None, message
    # The suggested selection, resolved on the project's asset graph, holds every asset it needs and no other.
    graph = code_location.resolve_asset_graph()
    selected = {k.to_user_string() for k in dg.AssetSelection.from_string(hint.group(1)).resolve(graph)}
    assert selected == NEEDED[asset], (hint.group(1), selected)
