"""The gc-worker: delayed and periodic garbage collection (queue `gc`)."""
