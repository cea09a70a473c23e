"""Contract suites that hold backends to pydatatask's rules; usable by third-party backends."""
