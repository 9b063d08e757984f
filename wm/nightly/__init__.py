"""The nightly cycle: train, evaluate, promote, commit to memory, retention."""
