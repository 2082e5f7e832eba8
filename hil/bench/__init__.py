"""The bench: instruments, wiring, timing, the bench-time model and test benches."""
