"""Getting shards in: which shards exist, downloading and verifying archives, reading their members, object storage, annotations. No Dagster, no Ray."""
