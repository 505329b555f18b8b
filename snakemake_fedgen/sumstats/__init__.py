"""GWAS-SSF summary statistics: column names, reading, writing and export from PLINK 2."""
