"""Executors: where a job runs (this loop, a pool, a process, a container, a pod)."""
