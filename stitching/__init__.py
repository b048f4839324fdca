"""Partition, prune, pool, stitch: turn a dense torch model into blocks and stitched variants."""
