"""Batch layer: bronze -> silver -> gold, run by the `lakehouse_bronze_to_gold` DAG.

Pure transforms (Spark DataFrame in, DataFrame out) live in `silver` and
`gold/*`; reading and writing Delta in `delta_io`; the Great Expectations gate
in `quality`; the PostgreSQL load in `load`; the task bodies that wire them in
`jobs`. The DAG files only call `jobs`.
"""
