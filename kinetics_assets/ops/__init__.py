"""Operating the platform: the `kinetics` command line, shard status, dead-run release and the demo's sample shard."""
