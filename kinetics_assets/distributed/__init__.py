"""The Ray executors the steps are handed: the transcode window and the depth pipeline (tasks and
model actors).
"""
