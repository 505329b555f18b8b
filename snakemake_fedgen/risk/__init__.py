"""Federated risk prediction: polygenic scores, a federated logistic risk model, its evaluation.

- :mod:`snakemake_fedgen.risk.pgs`: score weights (PGS Catalog scoring files, clumping and
  thresholding of a meta-analysis) and scoring a site's dosages;
- :mod:`snakemake_fedgen.risk.model`: the risk model fitted by federated Newton-Raphson rounds
  (pooled standardisation by secure sums, optional ridge), the model file, scoring people;
- :mod:`snakemake_fedgen.risk.evaluate`: discrimination, calibration and reclassification from
  per-site aggregates only.
"""
