"""kernel_agent: see ARCHITECTURE.md (not built yet)."""
