"""polyhedral: see ARCHITECTURE.md (not built yet)."""
