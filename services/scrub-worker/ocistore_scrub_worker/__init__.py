"""The scrub-worker: continuous integrity checking of every store (queue `scrub`)."""
