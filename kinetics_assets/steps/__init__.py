"""One asset's work over many shards, without Dagster: the plain functions the asset shells call. Parallel work goes through a runner handed in from the distributed layer."""
