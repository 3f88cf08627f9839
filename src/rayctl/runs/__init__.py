"""Runs: launch a recipe as a Ray job, follow it, record it in the ledger."""
