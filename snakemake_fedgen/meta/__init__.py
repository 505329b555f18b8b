"""Meta-analysis of GWAS-SSF summary statistics: harmonisation, fixed and random effects,
sample-size weighted Z, genomic control; streamed chromosome by chromosome."""
