"""Everything Dagster: partitions, one module per asset with its run config and checks, and the QA report."""
