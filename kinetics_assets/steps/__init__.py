"""One asset's work over many shards, without Dagster or Ray: the plain functions the asset shells
call. Parallel work goes through an executor handed in (the Ray ones live in `distributed/`; the
in-process ones here run the same per-clip and per-video functions without Ray).
"""
