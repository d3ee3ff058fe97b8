"""medperf-server: MedPerf's v0 REST API on Bottle, with SQLite or PostgreSQL storage."""
