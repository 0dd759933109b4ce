"""The canonical store: SQLAlchemy models, Alembic migrations and the repository functions (the only SQL)."""
