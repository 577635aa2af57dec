"""The Lance table of clips: schema, fragment writes, per-shard commits, maintenance. No Dagster, no Ray."""
