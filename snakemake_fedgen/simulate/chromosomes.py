"""Chromosomes of a simulated federation: GRCh38 lengths, the ``--chromosomes`` list, the split.

A federation covers one or more autosomes. The scale's sizes are totals for the whole
federation, spread over the chosen chromosomes (:func:`split_sizes`), so a three-chromosome
``tiny`` federation is about as large, and as quick to simulate and impute, as a
one-chromosome one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SimulationError

from snakemake_fedgen.assemblies import CHROM_LENGTHS

#: GRCh38 chromosome lengths in bp (the ``##contig`` lengths written): the workflow's table.
GRCH38_LENGTHS: dict[str, int] = CHROM_LENGTHS["GRCh38"]
#: Chromosomes ``--chromosomes`` accepts: the autosomes. X is listed above for its length but
#: not simulated (males would need haploid calls and the workflow's sex checks).
AUTOSOMES: tuple[str, ...] = tuple(str(i) for i in range(1, 23))
DEFAULT_CHROMOSOMES: tuple[str, ...] = ("20",)
#: Simulated variants lie in [SPAN_START, span_end(chrom)): clear of both telomeres.
SPAN_START = 1_000_000


def span_end(chrom: str) -> int:
    """End of the simulated span of ``chrom``: its length less 1 Mb, rounded down to a Mb.

    chr20 (64,444,167 bp) gives 63,000,000.
    """
    return (GRCH38_LENGTHS[chrom] - SPAN_START) // 1_000_000 * 1_000_000


def parse_chromosomes(text: str) -> tuple[str, ...]:
    """Parse ``--chromosomes`` (``20``, ``20,21,22``, ``1-22``) into numeric order.

    Raises :class:`SimulationError` naming the bad item and the accepted names.
    """
    chosen: list[str] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        lo, sep, hi = item.partition("-")
        if sep and _number(lo) > _number(hi):
            raise SimulationError(
                f"--chromosomes {text}: range {item} runs backwards; write it as {hi}-{lo}"
            )
        names = [lo] if not sep else [str(i) for i in range(_number(lo), _number(hi) + 1)]
        for name in names:
            _number(name)
            if name in chosen:
                raise SimulationError(f"--chromosomes {text}: chromosome {name} is given twice")
            chosen.append(name)
    if not chosen:
        raise SimulationError(f"--chromosomes {text!r}: no chromosome given; e.g. 20 or 20,21,22")
    return tuple(sorted(chosen, key=int))


def _number(name: str) -> int:
    if name not in AUTOSOMES:
        raise SimulationError(
            f"--chromosomes: {name!r} is not a simulated chromosome; use autosomes 1-22 as "
            "written in the VCFs (no 'chr' prefix; X is not simulated), e.g. 20,21,22 or 1-22"
        )
    return int(name)


def split_sizes(
    chromosomes: Sequence[str], *, n_loci: int, n_background: int
) -> tuple[np.ndarray, np.ndarray]:
    """Spread a scale's loci and background SNPs over ``chromosomes``.

    Loci are shared out evenly (earlier chromosomes take the remainder) with at least one per
    chromosome, so there are ``max(n_loci, len(chromosomes))`` in all; background SNPs are
    shared in proportion to GRCh38 length (largest remainders round up), ``n_background`` in
    all, as on a genome-wide array.

    Returns
    -------
    loci, background
        ``(n_chromosomes,)`` int64 counts per chromosome, in the order given.
    """
    n = len(chromosomes)
    total = max(n_loci, n)
    loci = np.full(n, total // n, dtype=np.int64)
    loci[: total % n] += 1
    length = np.array([GRCH38_LENGTHS[c] for c in chromosomes], dtype=float)
    exact = n_background * length / length.sum()
    background = np.floor(exact).astype(np.int64)
    short = n_background - int(background.sum())
    background[np.argsort(-(exact - background), kind="stable")[:short]] += 1
    return loci, background
