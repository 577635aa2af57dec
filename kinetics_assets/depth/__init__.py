"""The monocular depth model (torch + transformers): loading, batched inference, the tiny random stand-in. No Dagster, no Ray."""
