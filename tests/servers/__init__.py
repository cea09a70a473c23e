"""Real servers for the tests, started once per test session on loopback ports."""
