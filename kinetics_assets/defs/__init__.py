"""Everything Dagster: partitions, one module per asset with its run config and checks, the QA report,
`recording` (where step results become metadata and check evaluations) and `engine_config` (run-config
fields taken from the engine's dataclasses). The asset modules leave out `from __future__ import
annotations`: Dagster reads each run config's class from the asset's signature.
"""
