"""benchmarks: see ARCHITECTURE.md (not built yet)."""
