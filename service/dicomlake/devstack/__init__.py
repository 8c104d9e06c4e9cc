"""Local development stack: embedded PostgreSQL and Azurite, started by `make run` and the test session."""
