"""Video in and out with PyAV and numpy: the transcode engine, decoding frames with timestamps, sampling, the depth codec. No Dagster, no Ray."""
