"""dvm_runtime: see ARCHITECTURE.md (not built yet)."""
