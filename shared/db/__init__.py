"""Persistence: models, engine factory, migrations."""
