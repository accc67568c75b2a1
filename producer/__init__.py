"""Clickstream event producer (kafka-python)."""
