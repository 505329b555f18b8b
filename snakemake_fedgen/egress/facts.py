"""Facts a site computes from its own data, against which the airlock checks every release.

A steward registers each dataset at the node (``fedgen node dataset register``). The node reads
the genotype file itself (never a task): its sample count, and the *variant universe*, the
variants it holds plus those of any public reference panel the site imputes from. A released
summary-statistics row must then name a variant of that universe (alleles in either order), no
file may have more rows than the universe has variants or repeat a variant, and no ``n`` may
exceed the largest registered cohort: a table whose identifiers, sizes or row count were made up
to carry data is refused.

Storage, in the node's state directory::

    datasets/NAME.json   name, samples, variants, the files read with their sha256, when
    datasets/NAME.u64    the universe: sorted unique 64-bit keys (:func:`variant_key`)

Both are written atomically; the node reloads them when the directory changes, so a dataset
registered while the node runs counts from the next release on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import open_text, write_bytes_atomic, write_text_atomic

__all__ = [
    "DatasetFacts",
    "ReleaseFacts",
    "SampleSet",
    "load_facts",
    "register_dataset",
    "register_sample_set",
    "rsid_key",
    "sample_sets",
    "set_difference",
    "variant_key",
    "variant_label_matches",
]

DATASETS_DIR = "datasets"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
RSID = re.compile(r"rs[0-9]+\Z")
_CHROM_ALIASES = {"23": "X", "24": "Y", "25": "MT", "M": "MT", "26": "MT"}


#: File names the tools read as VCF/BCF.
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")


def _chrom(label: str) -> str:
    c = label[3:] if label[:3].lower() == "chr" else label
    c = c.upper() if c[:1].isalpha() else c
    return _CHROM_ALIASES.get(c, c)


def variant_key(chrom: str, pos: int | str, a1: str, a2: str) -> int:
    """A 64-bit key of a biallelic variant: chromosome name normalised (``chr20`` = ``20``,
    ``23`` = ``X``), alleles upper-cased and unordered (``A/G`` = ``G/A``)."""
    x, y = sorted((a1.upper(), a2.upper()))
    text = f"{_chrom(chrom)}:{int(pos)}:{x}:{y}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def variant_label_matches(label: str, chrom: str, pos: str, a1: str, a2: str) -> bool:
    """True if ``label`` is a plain label of this row's variant.

    Accepted: ``CHR:POS``, ``CHR:POS:A:B`` and ``CHR_POS_A_B`` with the row's alleles in either
    order and the chromosome with or without ``chr``. Anything else is free text.
    """
    sep = "_" if "_" in label else ":"
    parts = label.split(sep)
    if len(parts) not in (2, 4) or _chrom(parts[0]) != _chrom(chrom) or parts[1] != pos:
        return False
    return len(parts) == 2 or sorted(p.upper() for p in parts[2:]) == sorted(
        (a1.upper(), a2.upper())
    )


@dataclass(frozen=True)
class DatasetFacts:
    """What the node read from one registered dataset."""

    name: str
    samples: int
    variants: int
    sources: tuple[dict[str, str], ...]
    registered: str


@dataclass(frozen=True)
class ReleaseFacts:
    """The facts of every dataset registered at a node, as the airlock uses them."""

    datasets: tuple[DatasetFacts, ...]
    universe: np.ndarray  # sorted unique uint64 keys (variant_key)
    rsids: np.ndarray  # sorted unique uint64 keys (rsid_key)

    @property
    def max_samples(self) -> int:
        """The largest registered cohort: no released ``n`` may exceed it."""
        return max(d.samples for d in self.datasets)

    @property
    def universe_size(self) -> int:
        return int(self.universe.size)

    def unknown(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask of variant ``keys`` (uint64) that are not in the universe."""
        return _missing(self.universe, keys)

    def unknown_rsids(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask of rsID ``keys`` (uint64) the registered files do not hold there."""
        return _missing(self.rsids, keys)

    def describe(self) -> str:
        names = ", ".join(f"{d.name} ({d.samples} samples)" for d in self.datasets)
        return f"{names}; {self.universe_size} variants"


def _missing(known: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if known.size == 0:
        return np.ones(keys.shape, dtype=bool)
    at = np.minimum(np.searchsorted(known, keys), known.size - 1)
    return np.asarray(known[at] != keys)


def _run(argv: Sequence[str], *, what: Path) -> Iterator[str]:
    try:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{what}: reading it needs {argv[0]}, which is not installed (make install)."
        ) from None
    assert proc.stdout is not None
    yield from proc.stdout
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        first = err.strip().splitlines()[:1]
        raise ConfigError(f"{what}: {argv[0]} cannot read it ({first[0] if first else 'failed'}).")


def _is_vcf_like(path: Path) -> bool:
    return path.name.endswith(VCF_SUFFIXES)


def read_samples(path: Path) -> list[str]:
    """Sample IDs of a VCF/BCF (its header) or a PLINK 2 ``.psam``/``.fam`` (IID)."""
    if _is_vcf_like(path):
        return [
            line.rstrip("\n")
            for line in _run(["bcftools", "query", "-l", str(path)], what=path)
            if line.strip()
        ]
    if path.suffix in (".psam", ".fam"):
        with open_text(path) as f:
            rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
        return [r[1] if len(r) > 1 else r[0] for r in rows]
    raise ConfigError(
        f"{path}: not a genotype file the node reads samples from (.vcf.gz, .bcf, .psam, .fam)."
    )


def rsid_key(rsid: str, chrom: str, pos: int | str) -> int:
    """A 64-bit key binding an rsID to its position (an rsID is only valid where it is)."""
    text = f"{rsid.lower()}@{_chrom(chrom)}:{int(pos)}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def read_variants(path: Path) -> Iterator[tuple[int, int | None]]:
    """(variant key, rsID key or None) of every biallelic split of the variants in a VCF/BCF or
    a PLINK 2 ``.pvar``/``.bim``."""
    if _is_vcf_like(path):
        lines: Iterable[str] = _run(
            ["bcftools", "query", "-f", "%CHROM\t%POS\t%ID\t%REF\t%ALT\n", str(path)], what=path
        )
        cols = (0, 1, 2, 3, 4)
    elif path.suffix == ".pvar":
        lines, cols = _pvar_lines(path), (0, 1, 2, 3, 4)
    elif path.suffix == ".bim":
        lines, cols = _pvar_lines(path), (0, 3, 1, 4, 5)
    else:
        raise ConfigError(
            f"{path}: not a file the node reads variants from (.vcf.gz, .bcf, .pvar, .bim)."
        )
    c, p, i, r, a = cols
    for line in lines:
        f = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if len(f) <= max(cols):
            continue
        rs = None
        for vid in f[i].split(";"):
            if RSID.match(vid):
                rs = rsid_key(vid, f[c], f[p])
        for alt in f[a].split(","):
            if alt not in (".", "*"):
                yield variant_key(f[c], f[p], f[r], alt), rs


def _pvar_lines(path: Path) -> Iterator[str]:
    with open_text(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            yield line


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


#: PLINK fileset parts -> PLINK 2's flag for the fileset (``--bfile``/``--pfile``).
_PLINK_PARTS = {
    ".bed": "bfile",
    ".bim": "bfile",
    ".fam": "bfile",
    ".pgen": "pfile",
    ".pvar": "pfile",
    ".psam": "pfile",
}


@dataclass(frozen=True)
class GenotypeSource:
    """The site's genotypes as found: ``vcf`` files (one, or one per chromosome), or one
    PLINK 1 (``bfile``) or PLINK 2 (``pfile``) fileset given by its prefix."""

    kind: str
    paths: tuple[Path, ...]

    def part(self, suffix: str) -> Path:
        """A file of the PLINK fileset (``.bim``, ``.psam``, ...) next to its prefix."""
        prefix = self.paths[0]
        return prefix.with_name(prefix.name + suffix)

    @property
    def sample_file(self) -> Path:
        """The file naming the samples: the (first) VCF, the ``.fam`` or the ``.psam``."""
        if self.kind == "vcf":
            return self.paths[0]
        return self.part(".fam" if self.kind == "bfile" else ".psam")

    @property
    def variant_files(self) -> list[Path]:
        """The files listing the variants: every VCF, the ``.bim`` or the ``.pvar``."""
        if self.kind == "vcf":
            return list(self.paths)
        return [self.part(".bim" if self.kind == "bfile" else ".pvar")]


def find_genotypes(path: Path) -> GenotypeSource:
    """Say what a genotypes dataset is, in every form the workflow and the node read: a
    VCF/BCF, a folder of them (one per chromosome), or a PLINK 1/2 fileset (any of its files,
    or the folder holding it)."""
    path = Path(path).absolute()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        vcfs = [p for p in files if _is_vcf_like(p)]
        filesets = sorted(
            {(_PLINK_PARTS[p.suffix], p.with_suffix("")) for p in files if p.suffix in _PLINK_PARTS}
        )
        if bool(vcfs) == bool(filesets) or len(filesets) > 1:
            raise ConfigError(
                f"{path}: a genotypes folder must hold VCF/BCF files (one per chromosome) or "
                f"exactly one PLINK fileset (.bed/.bim/.fam or .pgen/.pvar/.psam); found "
                f"{len(vcfs)} VCF/BCF files and {len(filesets)} PLINK filesets"
            )
        if vcfs:
            return GenotypeSource("vcf", tuple(vcfs))
        kind, prefix = filesets[0]
        return GenotypeSource(kind, (prefix,))
    if _is_vcf_like(path):
        return GenotypeSource("vcf", (path,))
    if path.suffix in _PLINK_PARTS:
        return GenotypeSource(_PLINK_PARTS[path.suffix], (path.with_suffix(""),))
    raise ConfigError(
        f"{path}: not a genotype file the workflow reads; give a VCF/BCF (.vcf.gz, .bcf), a "
        "folder of them (one per chromosome), or a PLINK 1/2 fileset (.bed or .pgen, or its "
        "folder)"
    )


def genotype_files(genotypes: Path) -> tuple[Path, list[Path]]:
    """The file the samples are read from and the files the variants are read from
    (:func:`find_genotypes`)."""
    source = find_genotypes(genotypes)
    return source.sample_file, source.variant_files


def register_dataset(
    state_dir: Path, name: str, *, genotypes: Path, variants: Sequence[Path] = ()
) -> DatasetFacts:
    """Read a dataset's facts and store them in the node's state directory.

    Parameters
    ----------
    state_dir : Path
        The node's state directory.
    name : str
        Dataset name ([A-Za-z0-9._-], at most 64 characters).
    genotypes : Path
        The site's genotypes as the workflow reads them (:func:`genotype_files`): samples and
        variants.
    variants : sequence of Path
        Further variant sources, e.g. the public reference panel the site imputes from.

    Raises
    ------
    ConfigError
        A bad name, an unreadable file, or a file without samples or variants.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"dataset name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)."
        )
    sample_file, variant_files = genotype_files(genotypes)
    ids = read_samples(sample_file)
    samples = len(ids)
    if samples == 0:
        raise ConfigError(f"{sample_file}: has no samples; register the site's genotype file.")
    keys: list[np.ndarray] = []
    rsids: list[int] = []
    sources = []
    for path in [*variant_files, *(Path(v).absolute() for v in variants)]:
        found: list[int] = []
        for key, rs in read_variants(path):
            found.append(key)
            if rs is not None:
                rsids.append(rs)
        if not found:
            raise ConfigError(f"{path}: has no variants.")
        keys.append(np.array(found, dtype=np.uint64))
        sources.append({"path": str(path), "sha256": _sha256(path), "variants": str(len(found))})
    universe = np.unique(np.concatenate(keys))
    facts = DatasetFacts(
        name=name,
        samples=samples,
        variants=int(universe.size),
        sources=tuple(sources),
        registered=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    folder = Path(state_dir) / DATASETS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_text_atomic(folder / f"{name}.samples", "".join(f"{i}\n" for i in ids), perms=0o600)
    write_bytes_atomic(folder / f"{name}.u64", universe.astype("<u8").tobytes())
    write_bytes_atomic(
        folder / f"{name}.rsid.u64",
        np.unique(np.array(rsids, dtype=np.uint64)).astype("<u8").tobytes(),
    )
    write_text_atomic(
        folder / f"{name}.json",
        json.dumps(
            {
                "name": name,
                "samples": samples,
                "variants": facts.variants,
                "sources": list(sources),
                "registered": facts.registered,
            },
            indent=1,
        ),
    )
    return facts


def registered(state_dir: Path) -> list[DatasetFacts]:
    """The datasets registered at a node (no universe), by name."""
    folder = Path(state_dir) / DATASETS_DIR
    out = []
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
            out.append(
                DatasetFacts(
                    name=str(doc["name"]),
                    samples=int(doc["samples"]),
                    variants=int(doc["variants"]),
                    sources=tuple(doc.get("sources") or ()),
                    registered=str(doc.get("registered", "")),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{meta}: unreadable dataset facts ({exc}); register the dataset again."
            ) from None
    return out


def load_facts(state_dir: Path) -> ReleaseFacts | None:
    """Every registered dataset's facts, or None when none is registered."""
    datasets = registered(state_dir)
    if not datasets:
        return None
    folder = Path(state_dir) / DATASETS_DIR
    parts: dict[str, list[np.ndarray]] = {"u64": [], "rsid.u64": []}
    for d in datasets:
        for suffix, arrays in parts.items():
            path = folder / f"{d.name}.{suffix}"
            try:
                arrays.append(np.fromfile(path, dtype="<u8"))
            except OSError as exc:
                raise ConfigError(
                    f"{path}: cannot read the dataset's variants ({exc.strerror}); register "
                    f"{d.name} again."
                ) from None
    universe, rsids = (np.unique(np.concatenate(a)).astype(np.uint64) for a in parts.values())
    return ReleaseFacts(datasets=tuple(datasets), universe=universe, rsids=rsids)


@dataclass(frozen=True)
class SampleSet:
    """A fixed set of a dataset's samples that studies run on, registered by the steward.

    A task uses it by reading the registered keep file (``path``) as an input; the node checks
    the file still has the registered content (``sha256``) and keeps a ledger of released sets.
    """

    name: str
    dataset: str
    path: str
    sha256: str
    members: tuple[str, ...]
    registered: str


SETS_DIR = "sample-sets"


def _read_keep(path: Path) -> list[str]:
    """IDs of a PLINK keep file: one column (IID) or FID IID; ``#`` lines are headers."""
    with open_text(path) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return [r[1] if len(r) > 1 else r[0] for r in rows]


def register_sample_set(state_dir: Path, name: str, *, dataset: str, keep: Path) -> SampleSet:
    """Register ``keep`` (a PLINK keep file under a read root) as sample set ``name``.

    Raises
    ------
    ConfigError
        Unknown dataset, a bad name, an empty file, or IDs the dataset does not hold (the
        first few are named).
    """
    if not _NAME.match(name):
        raise ConfigError(f"sample set name {name!r}: use letters, digits, '.', '_' or '-'.")
    folder = Path(state_dir) / DATASETS_DIR
    known = {d.name for d in registered(state_dir)}
    if dataset not in known:
        raise ConfigError(
            f"sample set {name}: dataset {dataset!r} is not registered at this node "
            f"(registered: {', '.join(sorted(known)) or 'none'}); run `fedgen node dataset "
            "register` first."
        )
    keep = Path(os.path.realpath(keep))
    members = sorted(set(_read_keep(keep)))
    if not members:
        raise ConfigError(f"{keep}: holds no sample IDs.")
    cohort = set((folder / f"{dataset}.samples").read_text(encoding="utf-8").split())
    strangers = [m for m in members if m not in cohort]
    if strangers:
        raise ConfigError(
            f"{keep}: {len(strangers)} ID(s) are not samples of dataset {dataset} (first: "
            f"{', '.join(strangers[:3])}); a sample set is a subset of its dataset."
        )
    entry = SampleSet(
        name=name,
        dataset=dataset,
        path=str(keep),
        sha256=_sha256(keep),
        members=tuple(members),
        registered=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    sets = folder / SETS_DIR
    sets.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_text_atomic(
        sets / f"{name}.json", json.dumps(entry.__dict__ | {"members": members}), perms=0o600
    )
    return entry


def sample_sets(state_dir: Path) -> dict[str, SampleSet]:
    """The registered sample sets by the real path of their keep file."""
    folder = Path(state_dir) / DATASETS_DIR / SETS_DIR
    out: dict[str, SampleSet] = {}
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
            entry = SampleSet(**{**doc, "members": tuple(doc["members"])})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"{meta}: unreadable sample set ({exc}); register it again."
            ) from None
        out[entry.path] = entry
    return out


def set_difference(a: Sequence[str], b: Sequence[str]) -> int:
    """Size of the symmetric difference of two sample sets."""
    return len(set(a) ^ set(b))


def facts_stamp(state_dir: Path) -> float:
    """A number that changes whenever a dataset is (re)registered (the folder's mtime)."""
    try:
        return os.stat(Path(state_dir) / DATASETS_DIR).st_mtime_ns
    except OSError:
        return 0.0
