"""Benchmarks: every one prints ratios against a baseline measured in the same run and records
its results in the repository's benchmarks/ folder (markdown + JSON)."""
