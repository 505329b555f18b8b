"""The ``counts`` kind: a short QC counts table (``step  quantity  count``, e.g. ``qc_counts.tsv``).

Labels are short machine tokens; every count is 0, at least ``min_cell``, or suppressed as
``<k`` with ``k >= min_cell`` (:func:`snakemake_fedgen.egress.disclosure.write_counts_table`
writes such tables).
"""

from __future__ import annotations

import re
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.kind import Kind, Violations, text_lines
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = [
    "ALIGN_CLASSES",
    "COUNTS_HEADER",
    "COUNTS_TOKEN_RE",
    "IMPORT_QUANTITIES",
    "KIND",
    "PHENOTYPE_QUANTITIES",
    "QUANTITIES",
    "STEPS",
    "STEP_ORDER",
]

COUNTS_HEADER = ("step", "quantity", "count")
_COUNTS_HEADER_TEXT = "\t".join(COUNTS_HEADER)
#: Step and quantity labels are short machine tokens, so they cannot smuggle identifiers.
COUNTS_TOKEN_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,47}$")
#: How ``fedgen qc align`` classifies each site variant against the panel (``variants_<class>``).
ALIGN_CLASSES: tuple[str, ...] = (
    "match",
    "swap",
    "flip",
    "flip_swap",
    "not_in_panel",
    "allele_mismatch",
    "ambiguous",
    "af_mismatch",
)
#: What ``fedgen qc import`` counts (step ``import``): every variant it does not carry on.
IMPORT_QUANTITIES: tuple[str, ...] = (
    "variants",
    "variants_other_contig",
    "variants_multiallelic",
    "variants_not_snp",
    "variants_duplicate_position",
)
#: What ``fedgen qc phenotypes`` counts (step ``phenotypes``): the table matched to the samples.
PHENOTYPE_QUANTITIES: tuple[str, ...] = (
    "samples_genotyped",
    "samples_matched",
    "samples_without_phenotypes",
    "rows_without_genotypes",
    "rows_duplicated",
)
#: The workflow's QC steps and quantities (``fedgen qc counts``, ``fedgen qc align``, the
#: imputation counts). At a site with registered datasets a counts table holds only these, each
#: (step, quantity) once: labels of its own choosing would be a channel of their own.
STEP_ORDER: tuple[str, ...] = (
    "import",
    "phenotypes",
    "input",
    "align",
    "variant_call_rate",
    "sample_call_rate",
    "heterozygosity",
    "duplicates",
    "relatedness",
    "sex_check",
    "maf",
    "hwe",
    "final",
    "imputation",
    "pgs",
)
STEPS: frozenset[str] = frozenset(STEP_ORDER)
QUANTITIES: frozenset[str] = frozenset(
    {
        "samples",
        "variants",
        "samples_removed",
        "variants_removed",
        "variants_imputed",
        "variants_dr2_passed",
        "chunks",
        "chunks_skipped",
        "variants_chunk_skipped",
        # fedgen pgs score: how the score's weights matched the site's variants.
        "variants_in_weights",
        "variants_matched",
        "variants_not_at_site",
        "variants_effect_only",
        "variants_effect_only_unresolved",
        *(f"variants_{k}" for k in ALIGN_CLASSES),
        *IMPORT_QUANTITIES,
        *PHENOTYPE_QUANTITIES,
    }
)


def detect(s: Sniff) -> bool:
    name = s.name.lower()
    if not name.endswith(".tsv") or s.compression:
        return False
    return name.endswith("counts.tsv") or (
        s.first_line is not None and s.first_line.split("\t")[0] == "step"
    )


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    lines = text_lines(stream)
    header = next(lines, None)
    if header is None or tuple(header.split("\t")) != COUNTS_HEADER:
        return False, (
            f"line 1: a counts table's header must be exactly {_COUNTS_HEADER_TEXT!r}; "
            f"got {(header or '')[:80]!r}"
        )
    suppressed = f"<{policy.min_cell}"
    facts = policy.facts
    ceiling = max(facts.max_samples, facts.universe_size) if facts is not None else None
    seen: set[tuple[str, str]] = set()
    bad = Violations()
    total = 0
    for lineno, line in enumerate(lines, start=2):
        total += 1
        if total > policy.max_count_rows:
            return False, (
                f"line {lineno}: more than max_count_rows={policy.max_count_rows} data rows; "
                "a counts table is a short QC summary"
            )
        row = line.split("\t")
        if len(row) != 3:
            bad.row("malformed", f"line {lineno}: {len(row)} fields but the header has 3")
            continue
        step, quantity, count = row
        for col, value in (("step", step), ("quantity", quantity)):
            if not COUNTS_TOKEN_RE.match(value):
                bad.row(
                    "malformed",
                    f"line {lineno} column {col!r}: {value[:40]!r} is not a short token "
                    "(lower-case letters, digits, _ . -; at most 48 characters)",
                )
                break
        else:
            if facts is not None:
                problem = _site_facts_problem(step, quantity, count, seen, ceiling)
                if problem:
                    bad.row("site-facts", f"line {lineno}: {problem}")
                    continue
            # "<k" with k >= min_cell was suppressed at least as strictly as this site asks.
            if count.startswith("<") and count[1:].isascii() and count[1:].isdigit():
                if int(count[1:]) >= policy.min_cell:
                    continue
                bad.row(
                    "min_cell",
                    f"line {lineno} column 'count': {count!r} was suppressed below "
                    f"min_cell={policy.min_cell}; write it as {suppressed!r}",
                )
                continue
            if not (count.isascii() and count.isdigit()):
                bad.row(
                    "malformed",
                    f"line {lineno} column 'count': {count[:40]!r} is neither a non-negative "
                    f"integer nor {suppressed!r}",
                )
            elif 0 < int(count) < policy.min_cell:
                bad.row(
                    "min_cell",
                    f"line {lineno} column 'count': count={count} is below "
                    f"min_cell={policy.min_cell}; write it as {suppressed!r}",
                )
    if bad.rows:
        return False, bad.summary(total)
    return True, f"counts table with {total} rows passes (min_cell={policy.min_cell})"


def _site_facts_problem(
    step: str, quantity: str, count: str, seen: set[tuple[str, str]], ceiling: int | None
) -> str | None:
    if step not in STEPS:
        return (
            f"step {step[:40]!r} is not one of the workflow's QC steps ({', '.join(sorted(STEPS))})"
        )
    if quantity not in QUANTITIES:
        return (
            f"quantity {quantity[:40]!r} is not one the workflow counts "
            f"({', '.join(sorted(QUANTITIES))})"
        )
    if (step, quantity) in seen:
        return f"{step}/{quantity} appears a second time"
    seen.add((step, quantity))
    if ceiling is not None and count.isascii() and count.isdigit() and int(count) > ceiling:
        return (
            f"count {count} is above anything the datasets registered at this site hold "
            f"({ceiling} samples or variants)"
        )
    return None


KIND = Kind("counts", detect, validate)
