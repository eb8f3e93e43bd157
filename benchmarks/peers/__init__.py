"""Peer runtimes run beside sparsert (each in its own process and environment)."""
