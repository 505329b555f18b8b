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

from snakemake_fedgen.simulate.genomes import CHROM, CHROM_LENGTH

_PHASED = np.frombuffer(b"0|0\t0|1\t1|0\t1|1\t", dtype=np.uint8).reshape(4, 4)
_UNPHASED = np.frombuffer(b"0/0\t0/1\t1/1\t./.\t", dtype=np.uint8).reshape(4, 4)
_CHUNK = 2000


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise SimulationError(f"{name} not found on PATH; install htslib (Debian package 'tabix')")
    return path


def _header(samples: Sequence[str], *, source: str, phased: bool) -> bytes:
    lines = [
        "##fileformat=VCFv4.2",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        f"##source={source}",
        f"##contig=<ID={CHROM},length={CHROM_LENGTH},assembly=GRCh38>",
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
    pos: np.ndarray,
    ids: Sequence[str],
    ref: np.ndarray,
    alt: np.ndarray,
    codes: np.ndarray,
    phased: bool,
    source: str,
) -> None:
    """Write a bgzipped, tabix-indexed VCF of chromosome 20 atomically.

    Parameters
    ----------
    path
        Output ``.vcf.gz``; ``path + ".tbi"`` is written next to it.
    samples
        Sample IDs, one per column.
    pos, ids, ref, alt
        ``(n_variants,)`` 1-based positions (increasing), IDs and alleles.
    codes
        ``(n_variants, n_samples)`` uint8. Phased: ``2 * hap0 + hap1`` (0..3); unphased: ALT
        count 0/1/2 or 3 for a missing call.
    phased
        Write ``a|b`` (panel) or ``a/b`` (array calls).
    source
        Value of the ``##source`` header line.
    """
    table = _PHASED if phased else _UNPHASED
    path = Path(path)
    vcf = AtomicFile(path, "wb")
    index = Path(f"{vcf.tmp}.tbi")
    try:
        with vcf as out:
            # BGZF blocks are compressed independently: threads do not change the bytes.
            proc = subprocess.Popen(
                [_tool("bgzip"), "-c", "-@", "2"], stdin=subprocess.PIPE, stdout=out
            )
            assert proc.stdin is not None
            try:
                proc.stdin.write(_header(samples, source=source, phased=phased))
                prefixes = [
                    f"{CHROM}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\tGT\t".encode()
                    for p, i, r, a in zip(
                        pos.tolist(), ids, ref.tolist(), alt.tolist(), strict=True
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


def write_plink_map(path: Path, *, bp: np.ndarray, cm: np.ndarray) -> None:
    """Write a PLINK ``.map`` genetic map (chrom, id, cM, bp) as Beagle's ``map=`` reads it."""
    text = "".join(
        f"{CHROM}\t.\t{c:.6f}\t{b}\n" for b, c in zip(bp.tolist(), cm.tolist(), strict=True)
    )
    write_text_atomic(path, text)
