"""Training: optimiser set-up, resumable checkpoints, distributed helpers and the epoch loops."""
