"""A local XNAT-compatible server for the demo mode, the tests and the benchmarks."""
