"""QA over the table with DuckDB: views, canned queries, text tables and PNGs. No Dagster, no Ray."""
