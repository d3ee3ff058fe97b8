"""medperf-server: MedPerf's v0 registry API on Bottle, with SQLite or PostgreSQL storage."""
