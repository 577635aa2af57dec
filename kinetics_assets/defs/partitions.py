"""One partition per shard of the configured release or manifest."""

from __future__ import annotations

import dagster as dg

from kinetics_assets.settings import Settings
from kinetics_assets.ingest.shards import load_shards

SETTINGS = Settings.from_env()
SHARDS = load_shards(SETTINGS)
shard_partitions = dg.StaticPartitionsDefinition(list(SHARDS))
