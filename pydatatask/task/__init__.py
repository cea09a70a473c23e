"""Tasks: what a stage runs and how it is wired to repositories."""
