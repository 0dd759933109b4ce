"""FastAPI service: usage events, REST resources, webhooks. Built by the usage metering issue."""
