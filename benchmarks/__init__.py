"""streamtrain's benchmark suite: `make bench` (full, ~20 min) or `make bench-quick` (~2 min)."""
