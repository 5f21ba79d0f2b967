"""The scrub-worker: continuous integrity checking of every store (queue `scrub`)."""

# MiB a second a worker hashes at most unless its `--rate` says otherwise, so scrub never starves the API.
DEFAULT_RATE = "200"
