"""Chromosome lengths of the human genome assemblies the workflow knows (public facts).

The lengths are those of the primary assembly sequences (NCBI GRCh37.p13 and GRCh38.p14; the
refget/UCSC ``chrom.sizes`` of hg19 and hg38 give the same). The workflow derives its imputation
chunks from them before any task runs, so the chunk grid does not depend on any site's data.
"""

from __future__ import annotations

from snakemake_executor_plugin_fedgen.errors import ConfigError

__all__ = ["CHROM_LENGTHS", "chrom_length", "chrom_sort_key", "plink_chrom"]

#: Assembly -> PLINK chromosome code -> length in bp (autosomes and X).
CHROM_LENGTHS: dict[str, dict[str, int]] = {
    "GRCh37": {
        "1": 249_250_621, "2": 243_199_373, "3": 198_022_430, "4": 191_154_276,
        "5": 180_915_260, "6": 171_115_067, "7": 159_138_663, "8": 146_364_022,
        "9": 141_213_431, "10": 135_534_747, "11": 135_006_516, "12": 133_851_895,
        "13": 115_169_878, "14": 107_349_540, "15": 102_531_392, "16": 90_354_753,
        "17": 81_195_210, "18": 78_077_248, "19": 59_128_983, "20": 63_025_520,
        "21": 48_129_895, "22": 51_304_566, "X": 155_270_560,
    },
    "GRCh38": {
        "1": 248_956_422, "2": 242_193_529, "3": 198_295_559, "4": 190_214_555,
        "5": 181_538_259, "6": 170_805_979, "7": 159_345_973, "8": 145_138_636,
        "9": 138_394_717, "10": 133_797_422, "11": 135_086_622, "12": 133_275_309,
        "13": 114_364_328, "14": 107_043_718, "15": 101_991_189, "16": 90_338_345,
        "17": 83_257_441, "18": 80_373_285, "19": 58_617_616, "20": 64_444_167,
        "21": 46_709_983, "22": 50_818_468, "X": 156_040_895,
    },
}  # fmt: skip


def plink_chrom(name: str) -> str:
    """A chromosome name as PLINK 2 writes it: ``chr20`` -> ``20``, ``chrX``/``23`` -> ``X``."""
    text = str(name).strip()
    if text[:3].lower() == "chr":
        text = text[3:]
    return {"23": "X", "x": "X"}.get(text, text)


def chrom_sort_key(name: str) -> tuple[int, str]:
    """Genome order: 1..22, then X, Y, XY, MT, then anything else by name."""
    code = plink_chrom(name).upper()
    if code.isdigit():
        return int(code), ""
    return {"X": 23, "Y": 24, "XY": 25, "MT": 26, "M": 26}.get(code, 99), code


def chrom_length(assembly: str, chrom: str) -> int:
    """Length of ``chrom`` in ``assembly``.

    Raises
    ------
    ConfigError
        An assembly or chromosome the table does not hold (name the fix: no chunking).
    """
    lengths = CHROM_LENGTHS.get(assembly)
    if lengths is None:
        raise ConfigError(
            f"assembly {assembly!r}: chromosome lengths are known for "
            f"{', '.join(CHROM_LENGTHS)} only; impute whole chromosomes (config "
            "impute.chunk_mb: 0) or lift the data over"
        )
    code = plink_chrom(chrom)
    if code not in lengths:
        raise ConfigError(
            f"chromosome {chrom!r} is not a chromosome of {assembly} the workflow imputes "
            f"(1-22, X); check config `chromosomes`"
        )
    return lengths[code]
