"""Egress: what may leave a site and how site results are made safe to leave.

:mod:`~snakemake_fedgen.egress.airlock` decides, file by file, what a site publishes;
:mod:`~snakemake_fedgen.egress.export` turns PLINK 2 ``--glm`` reports into GWAS-SSF tables the
airlock accepts and :mod:`~snakemake_fedgen.egress.disclosure` does the same for QC counts.
Egress sits above :mod:`snakemake_fedgen.sumstats` (the format) and below the node and the
exact-mode code, which import it; it imports neither.
"""
