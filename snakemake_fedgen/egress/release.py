"""What the node changes in a file before it is released: numbers rounded to fixed precision,
and (where the site asks for it) differentially private noise (:func:`privatise_sumstats`).

A task chooses every digit it writes. Data hidden in the trailing digits of ``beta``,
``standard_error`` or a p-value (a genotype vector in the 7th to 15th digit) passes any range
check; rounding every number of a summary-statistics table to ``digits`` significant digits at
the node, after the task has ended and before the airlock, removes it. ``n`` and positions are
integers and stay as they are; ``NA`` stays ``NA``; text the rounding cannot parse is left for
the airlock to refuse.

The rewrite is counted: :func:`round_sumstats` returns how many values changed, and the node
records that in the audit log and the task's system log.
"""

from __future__ import annotations

import dataclasses
import decimal
import gzip
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from snakemake_executor_plugin_fedgen.errors import EgressRefused

from snakemake_fedgen.egress.airlock.kinds import KINDS
from snakemake_fedgen.egress.airlock.sniff import Sniff, forbidden, sniff
from snakemake_fedgen.sumstats import columns

if TYPE_CHECKING:
    import numpy as np

    from snakemake_fedgen.egress.privacy import DpRelease, PrivacySettings

__all__ = ["Rounded", "privatise_sumstats", "round_frequency", "round_number", "round_sumstats"]

#: Columns whose numbers are rounded; every other column is an integer, allele or label.
ROUNDED_COLUMNS: frozenset[str] = frozenset(
    {
        *columns.EFFECT,
        "standard_error",
        "effect_allele_frequency",
        "p_value",
        "neg_log_10_p_value",
        "ci_upper",
        "ci_lower",
        "info",
    }
)


@dataclass(frozen=True)
class Rounded:
    """The result of :func:`round_sumstats`: rows read and values changed."""

    rows: int
    changed: int
    digits: int


def _sumstats(found: Sniff) -> bool:
    """Is this a summary-statistics table the airlock will judge as one? Content the airlock
    refuses outright (a VCF named .tsv.gz, say) is never rewritten: it goes to quarantine as
    the task wrote it."""
    if forbidden(found) is not None or found.compression not in (None, "gzip"):
        return False
    # The kind the airlock will see (aggregates and counts tables also end in .tsv).
    kind = next((k for k in KINDS.values() if k.detect(found)), None)
    return kind is not None and kind.name == "sumstats"


def round_number(text: str, digits: int) -> str:
    """``text`` as a number with ``digits`` significant digits (``"NA"`` and non-numbers as is).

    >>> round_number("0.123456789", 4), round_number("1.23456e-12", 3), round_number("NA", 4)
    ('0.1235', '1.23e-12', 'NA')
    """
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value) or text.strip() != text or "_" in text:
        return text
    return f"{value:.{digits}g}"


def round_frequency(text: str, digits: int, *, n: str, min_mac: float) -> str:
    """An allele frequency rounded like :func:`round_number`, but never across the minor
    allele count rule: if plain rounding would move ``2 n min(f, 1-f)`` to the other side of
    ``min_mac`` than the value the task wrote, the frequency is rounded the other way (one unit
    in the last digit), so the airlock judges the row as written."""
    new = round_number(text, digits)
    try:
        count, before, after = float(n), float(text), float(new)
    except ValueError:
        return new
    if not (math.isfinite(count) and 0.0 <= before <= 1.0):
        return new
    passes = 2.0 * count * min(before, 1.0 - before) >= min_mac
    if (2.0 * count * min(after, 1.0 - after) >= min_mac) == passes:
        return new
    # Toward 0.5 keeps a passing row passing; away from it keeps a failing row failing.
    up = (before < 0.5) == passes
    d = decimal.Decimal(text)
    exponent = d.adjusted() - digits + 1
    step = d.quantize(
        decimal.Decimal(1).scaleb(exponent),
        rounding=decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR,
    )
    return f"{float(step):.{digits}g}"


def round_sumstats(
    src: Path, dst: Path, *, digits: int, name: str, max_bytes: int, min_mac: float = 0.0
) -> Rounded | None:
    """Write ``src`` (a GWAS-SSF table, plain or gzip) to ``dst`` with its numbers rounded.

    Returns None, writing nothing, when ``name``/content is not a summary-statistics table the
    rounding understands or decompresses to more than ``max_bytes`` (the airlock then judges
    the original). ``min_mac``: the airlock's rule, which frequency rounding never crosses
    (:func:`round_frequency`).
    """
    with open(src, "rb") as f:
        found = sniff(f, name)
    if not _sumstats(found):
        return None
    gz = found.compression == "gzip"
    opener = gzip.open if gz else open
    try:
        with opener(src, "rb") as raw, open(dst, "xb") as out_raw:
            sink = gzip.GzipFile(fileobj=out_raw, mode="wb", mtime=0) if gz else out_raw
            with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
                header = text.readline()
                cols = header.rstrip("\n").split("\t")
                rounded = [i for i, c in enumerate(cols) if c in ROUNDED_COLUMNS]
                i_eaf = (
                    cols.index("effect_allele_frequency")
                    if "effect_allele_frequency" in cols
                    else -1
                )
                i_n = cols.index("n") if "n" in cols else -1
                sink.write(header.encode())
                rows = changed = 0
                budget = max_bytes
                for line in text:
                    rows += 1
                    budget -= len(line)
                    if budget < 0:
                        raise ValueError("decompresses beyond max_bytes")
                    end = "\n" if line.endswith("\n") else ""
                    fields = line[: len(line) - len(end)].split("\t")
                    for i in rounded:
                        if i < len(fields):
                            if i == i_eaf and 0 <= i_n < len(fields):
                                new = round_frequency(
                                    fields[i], digits, n=fields[i_n], min_mac=min_mac
                                )
                            else:
                                new = round_number(fields[i], digits)
                            if new != fields[i]:
                                changed += 1
                                fields[i] = new
                    sink.write(("\t".join(fields) + end).encode())
            if gz:
                sink.close()
    except (OSError, EOFError, UnicodeDecodeError, ValueError):
        # Not decompressible or not text: the airlock refuses the original with the reason.
        Path(dst).unlink(missing_ok=True)
        return None
    os.chmod(dst, 0o600)
    return Rounded(rows=rows, changed=changed, digits=digits)


def privatise_sumstats(
    src: Path,
    dst: Path,
    *,
    settings: PrivacySettings,
    name: str,
    rng: np.random.Generator,
    min_mac: float = 0.0,
) -> DpRelease | None:
    """Write ``src`` (a GWAS-SSF table) to ``dst`` with Gaussian noise (:mod:`.privacy`).

    Returns None, writing nothing, when the file is not a summary-statistics table.

    Raises
    ------
    EgressRefused
        A table without ``beta``, ``effect_allele_frequency`` or ``n`` (differential privacy
        is calibrated for linear-model effects), or with values that are not numbers.
    """
    import numpy as np
    import pandas as pd

    from snakemake_fedgen.egress.privacy import privatise_rows

    with open(src, "rb") as f:
        found = sniff(f, name)
    if not _sumstats(found):
        return None
    table = pd.read_csv(src, sep="\t", dtype=str, keep_default_na=False, compression="infer")
    missing = [c for c in ("beta", "effect_allele_frequency", "n") if c not in table.columns]
    if missing:
        raise EgressRefused(
            f"{name}: differential privacy at this site needs the column(s) "
            f"{', '.join(missing)} (it is calibrated for linear-model betas)"
        )
    try:
        beta = table["beta"].astype(float).to_numpy()
        eaf = table["effect_allele_frequency"].astype(float).to_numpy()
        n = table["n"].astype(float).to_numpy()
    except ValueError:
        raise EgressRefused(
            f"{name}: beta, effect_allele_frequency and n must be numbers"
        ) from None
    beta_, eaf_, se_, p_, keep, report = privatise_rows(
        beta, eaf, n, settings, rng, min_mac=min_mac
    )
    table["beta"] = [f"{v:.6g}" for v in beta_]
    table["effect_allele_frequency"] = [f"{v:.6g}" for v in eaf_]
    # The rule applies to the frequency as written (6 digits), not to the float before it.
    written = table["effect_allele_frequency"].astype(float).to_numpy()
    keep &= 2.0 * n * np.minimum(written, 1.0 - written) >= min_mac
    report = dataclasses.replace(
        report, released=int(keep.sum()), withheld_maf=int(keep.size - keep.sum())
    )
    table["standard_error"] = [f"{v:.6g}" for v in se_]
    table["p_value"] = [f"{v:.6g}" for v in p_]
    for column in ("neg_log_10_p_value", "ci_upper", "ci_lower", "info"):
        if column in table.columns:
            table[column] = "NA"
    text = table[keep].to_csv(sep="\t", index=False, lineterminator="\n")
    data = text.encode()
    with open(dst, "xb") as out:
        out.write(gzip.compress(data, mtime=0) if found.compression == "gzip" else data)
    os.chmod(dst, 0o600)
    return report
