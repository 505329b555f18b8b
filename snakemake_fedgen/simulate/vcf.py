"""Fast, deterministic VCF and genetic-map writers (bgzip + tabix from the system)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SimulationError
from snakemake_executor_plugin_fedgen.fileio import AtomicFile, write_text_atomic

from snakemake_fedgen.simulate.chromosomes import GRCH38_LENGTHS

_PHASED = np.frombuffer(b"0|0\t0|1\t1|0\t1|1\t", dtype=np.uint8).reshape(4, 4)
_UNPHASED = np.frombuffer(b"0/0\t0/1\t1/1\t./.\t", dtype=np.uint8).reshape(4, 4)
_CHUNK = 2000


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise SimulationError(f"{name} not found on PATH; install htslib (Debian package 'tabix')")
    return path


def _contigs(chrom: np.ndarray) -> list[str]:
    """The chromosomes of ``chrom`` in file order; refuse them out of order or interleaved."""
    first = np.ones(chrom.shape[0], dtype=bool)
    first[1:] = chrom[1:] != chrom[:-1]
    names = [str(c) for c in chrom[first].tolist()]
    if len(set(names)) != len(names) or names != sorted(names, key=int):
        raise SimulationError(
            f"VCF rows must come chromosome by chromosome in numeric order; got runs {names}"
        )
    return names


def _header(samples: Sequence[str], *, contigs: Sequence[str], source: str, phased: bool) -> bytes:
    lines = [
        "##fileformat=VCFv4.2",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        f"##source={source}",
        *(f"##contig=<ID={c},length={GRCH38_LENGTHS[c]},assembly=GRCh38>" for c in contigs),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="'
        + ("Phased genotype" if phased else "Genotype")
        + '">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(samples),
    ]
    return ("\n".join(lines) + "\n").encode()


def write_vcf(
    path: Path,
    *,
    samples: Sequence[str],
    chrom: np.ndarray,
    pos: np.ndarray,
    ids: Sequence[str],
    ref: np.ndarray,
    alt: np.ndarray,
    codes: np.ndarray,
    phased: bool,
    source: str,
) -> None:
    """Write a bgzipped, tabix-indexed VCF atomically, one ``##contig`` per chromosome.

    Parameters
    ----------
    path
        Output ``.vcf.gz``; ``path + ".tbi"`` is written next to it.
    samples
        Sample IDs, one per column.
    chrom
        ``(n_variants,)`` chromosome names, chromosome by chromosome in numeric order.
    pos, ids, ref, alt
        ``(n_variants,)`` 1-based positions (increasing within a chromosome), IDs and alleles.
    codes
        ``(n_variants, n_samples)`` uint8. Phased: ``2 * hap0 + hap1`` (0..3); unphased: ALT
        count 0/1/2 or 3 for a missing call.
    phased
        Write ``a|b`` (panel) or ``a/b`` (array calls).
    source
        Value of the ``##source`` header line.
    """
    table = _PHASED if phased else _UNPHASED
    contigs = _contigs(chrom)
    path = Path(path)
    vcf = AtomicFile(path, "wb")
    index = Path(f"{vcf.tmp}.tbi")
    try:
        with vcf as out:
            # BGZF blocks are compressed independently: threads do not change the bytes.
            # Compression is most of a large scale's time, so use every core we may.
            threads = str(max(2, len(os.sched_getaffinity(0))))
            proc = subprocess.Popen(
                [_tool("bgzip"), "-c", "-@", threads], stdin=subprocess.PIPE, stdout=out
            )
            assert proc.stdin is not None
            try:
                proc.stdin.write(_header(samples, contigs=contigs, source=source, phased=phased))
                prefixes = [
                    f"{c}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\tGT\t".encode()
                    for c, p, i, r, a in zip(
                        chrom.tolist(), pos.tolist(), ids, ref.tolist(), alt.tolist(), strict=True
                    )
                ]
                for start in range(0, codes.shape[0], _CHUNK):
                    block = table[codes[start : start + _CHUNK]]  # (rows, samples, 4) bytes
                    block[:, -1, 3] = ord("\n")
                    body = block.reshape(block.shape[0], -1)
                    proc.stdin.write(
                        b"".join(
                            prefixes[start + k] + body[k].tobytes() for k in range(body.shape[0])
                        )
                    )
            finally:
                proc.stdin.close()
                rc = proc.wait()
            if rc != 0:
                raise SimulationError(f"bgzip failed (exit {rc}) writing {path}")
            idx = subprocess.run(
                [_tool("tabix"), "-f", "-p", "vcf", str(vcf.tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if idx.returncode != 0:
                raise SimulationError(f"tabix failed on {path}: {idx.stderr.strip()}")
        # The VCF first, then its index (built on the same bytes, so never older than them).
        os.replace(index, f"{path}.tbi")
    finally:
        index.unlink(missing_ok=True)


def write_plink_map(path: Path, *, chrom: np.ndarray, bp: np.ndarray, cm: np.ndarray) -> None:
    """Write a PLINK ``.map`` genetic map (chrom, id, cM, bp) as Beagle's ``map=`` reads it.

    ``chrom``, ``bp`` and ``cm`` are ``(n_rows,)``; rows come chromosome by chromosome.
    """
    _contigs(chrom)
    text = "".join(
        f"{h}\t.\t{c:.6f}\t{b}\n"
        for h, b, c in zip(chrom.tolist(), bp.tolist(), cm.tolist(), strict=True)
    )
    write_text_atomic(path, text)
