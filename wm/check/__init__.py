"""`wm check [--repair]`: a consistency check of the data root (stale partial writes,
orphan media, queue rows and clip files that disagree, memory shards pointing at missing
or truncated files, model files missing or failing their checksum, claims and locks of
dead processes). `--repair` fixes what can be fixed without losing a committed memory."""
