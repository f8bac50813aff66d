"""Tooling of the repository (not in the wheel): what tests, benchmarks and the
cloud launcher share, such as removing a runtime's state directory."""
