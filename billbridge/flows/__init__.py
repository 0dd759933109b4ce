"""Jobs that wire connectors, mapping, store and billing together (Prefect flows in the orchestration issue)."""
