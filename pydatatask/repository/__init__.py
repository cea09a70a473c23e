"""Repositories: async key-value stores keyed by job id, one module per backend."""
