"""Spark Structured Streaming jobs: raw landing and fast aggregation."""
