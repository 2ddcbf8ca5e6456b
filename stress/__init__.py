"""Stress harness and benchmarks for the logwell SDK.

``python -m stress`` simulates a pre-fork fleet logging through one shipper against a
bundled ingest server running in its own process; ``python -m stress bench`` holds the
SDK to its performance targets. See ``python -m stress --help``.
"""
