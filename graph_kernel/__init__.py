"""graph_kernel: see ARCHITECTURE.md (not built yet)."""
