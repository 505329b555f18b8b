"""Column names and value shapes of the GWAS-SSF summary-statistics format (GWAS Catalog, v1.0).

Column names, chromosome names and codes, allele and identifier shapes. Shared by the airlock (which columns and values may leave a site), the exporter and the
meta-analysis.
"""

from __future__ import annotations

import re

#: Mandatory columns of a GWAS-SSF file, in their required order.
MANDATORY: tuple[str, ...] = (
    "chromosome",
    "base_pair_location",
    "effect_allele",
    "other_allele",
    "beta",
    "standard_error",
    "effect_allele_frequency",
    "p_value",
)

#: Effect columns; a file carries exactly one of them (``beta`` for linear models).
EFFECT: tuple[str, ...] = ("beta", "odds_ratio", "hazard_ratio")

#: Optional GWAS-SSF columns.
OPTIONAL: tuple[str, ...] = (
    "neg_log_10_p_value",
    "ci_upper",
    "ci_lower",
    "rsid",
    "variant_id",
    "info",
    "ref_allele",
    "n",
)

#: Every column name an airlock accepts in a summary-statistics table by default.
ALLOWED: frozenset[str] = frozenset(MANDATORY + EFFECT + OPTIONAL)

#: Column names that betray per-sample data; a table carrying any of them never leaves a site.
SAMPLE_ID_COLUMNS: frozenset[str] = frozenset(
    {
        "iid",
        "fid",
        "#iid",
        "#fid",
        "sample",
        "sample_id",
        "sampleid",
        "individual",
        "id",
        "participant",
        "participant_id",
        "subject",
        "subject_id",
        "pid",
        "patient_id",
    }
)

#: The chromosome names GWAS-SSF allows (X=23, Y=24, MT=25 are also accepted as numbers).
CHROMOSOMES: tuple[str, ...] = (*(str(i) for i in range(1, 26)), "X", "Y", "MT")

#: An allele a GWAS-SSF table may carry (nucleotides only: no symbolic or free text).
ALLELE_RE = re.compile(r"^[ACGTNacgtn]+$")
#: The shape of a dbSNP rsID.
RSID_RE = re.compile(r"^rs[0-9]+$")
#: A variant label such as 20:12345:A:G or 20_12345_G_A; no spaces or free text.
VARIANT_ID_RE = re.compile(r"^[A-Za-z0-9_:.\-]{1,200}$")

#: Chromosome labels by code (1-22, X=23, Y=24, MT=25), as written in output files.
CHROM_LABELS: tuple[str, ...] = ("", *(str(i) for i in range(1, 23)), "X", "Y", "MT")

_CHROM_CODES: dict[str, int] = {
    **{str(i): i for i in range(1, 26)},
    **{f"chr{i}": i for i in range(1, 26)},
    "X": 23,
    "Y": 24,
    "MT": 25,
    "M": 25,
    "chrX": 23,
    "chrY": 24,
    "chrM": 25,
    "chrMT": 25,
}


def chromosome_code(label: str) -> int:
    """Return the numeric code (1-25) of a chromosome label, or 0 if it is not one."""
    return _CHROM_CODES.get(label.strip(), 0)
