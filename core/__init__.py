"""Ponder's platform-neutral core: settings, storage, model clients, strategies and budgets."""
