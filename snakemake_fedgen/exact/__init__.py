"""Exact pooled linear regression from site aggregates, with optional secure aggregation.

A site computes per-variant sufficient statistics of the model ``y ~ C + g``
(:mod:`~snakemake_fedgen.exact.aggregates`); the centre sums them over sites and solves the
pooled model exactly (:mod:`~snakemake_fedgen.exact.solve`). With secure aggregation
(:mod:`~snakemake_fedgen.exact.secure`) each site uploads its aggregates under pairwise masks
that cancel in the sum, so the centre sees only the sum. See
``docs/exact-and-secure-aggregation.md``.
"""
