"""The declared schema: CREATE statements from .sql files or SQLAlchemy MetaData, normalised by a scratch engine."""
