"""QA over the table: DuckDB views, canned queries, text tables, histograms and frame-beside-depth previews. No Dagster, no Ray."""
