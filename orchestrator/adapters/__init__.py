"""Adapters to the outside world: ledger (SQLAlchemy), providers (httpx), broker, CLI."""
