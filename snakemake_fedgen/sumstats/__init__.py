"""GWAS-SSF summary statistics: column names and value shapes, reading and writing.

The site-side export from PLINK 2 (disclosure control, airlock check) is
:mod:`snakemake_fedgen.egress.export`; nothing here imports :mod:`snakemake_fedgen.egress`.
"""
