"""Pure mapping between outside records (contract files, vendor payloads) and the canonical model."""
