"""All Ray code the steps run on: the transcode window and the depth pipeline (tasks and model actors)."""
