"""Simulated federations: a reference panel and three sites with known truth (``fedgen simulate``).

The public entry point is :func:`snakemake_fedgen.simulate.federation.simulate`.
"""
