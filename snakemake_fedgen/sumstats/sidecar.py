"""The GWAS-SSF ``-meta.yaml`` sidecar: what a study says about itself, read and written.

The meta-analysis reads a study's sidecar (assembly, trait type, case/control counts, sample
size, reference digest, the reference panel the genotypes were aligned to) into a
:class:`StudyInfo`; :func:`check_compatible` refuses studies on different assemblies or
references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import HarmonisationError, SumstatsError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

__all__ = [
    "PANEL_DIGEST_RE",
    "StudyInfo",
    "check_compatible",
    "md5sum",
    "panel_digest",
    "read_study_info",
    "sidecar_path",
    "write_sidecar",
]

_ASSEMBLY_ALIASES = {"hg19": "GRCh37", "grch37": "GRCh37", "hg38": "GRCh38", "grch38": "GRCh38"}
#: ``fedgen.aligned_panel``: the SHA-256 of the reference panel file a site aligned its
#: genotypes to (:func:`panel_digest`), and nothing else.
PANEL_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class StudyInfo:
    """What the meta-analysis needs to know about one study (from its sidecar, if any).

    Attributes
    ----------
    path : Path
        The GWAS-SSF table.
    name : str
        Study name: the sidecar's ``fedgen.site`` or the file name without extensions.
    sidecar : Path or None
        The ``-meta.yaml`` sidecar that was read.
    assembly : str or None
        Genome assembly (normalised to ``GRCh37``/``GRCh38`` where recognised).
    trait_type : str or None
        ``quantitative`` or ``binary``.
    n_cases, n_controls : int or None
        Case and control counts for a binary trait.
    sample_size : float or None
        Total sample size from the sidecar's ``samples``.
    refget_digest : str or None
        GA4GH refget sequence-collection digest of the reference the study used.
    is_sorted : bool or None
        The sidecar's ``is_sorted`` flag.
    aligned_panel : str or None
        ``sha256:<hex>`` of the reference panel the site aligned its genotypes to before the
        GWAS (``fedgen.aligned_panel``).
    withheld : int or None
        Rows the site's disclosure rules withheld (``fedgen.variants_suppressed``).
    min_mac : float or None
        The site's minor-allele-count rule (``fedgen.min_mac``).
    """

    path: Path
    name: str
    sidecar: Path | None = None
    assembly: str | None = None
    trait_type: str | None = None
    n_cases: int | None = None
    n_controls: int | None = None
    sample_size: float | None = None
    refget_digest: str | None = None
    is_sorted: bool | None = None
    aligned_panel: str | None = None
    withheld: int | None = None
    min_mac: float | None = None

    @property
    def maf_floor(self) -> float | None:
        """The smallest MAF the site could release at its size: ``min_mac / (2 n)``."""
        if self.min_mac is None or not self.sample_size:
            return None
        return self.min_mac / (2 * self.sample_size)

    @property
    def effective_n(self) -> float | None:
        """Effective sample size ``4 / (1/N_cases + 1/N_controls)`` for a binary trait."""
        if self.n_cases and self.n_controls:
            return 4.0 / (1.0 / self.n_cases + 1.0 / self.n_controls)
        return None


def sidecar_path(path: Path) -> Path | None:
    """Return the existing ``-meta.yaml`` sidecar of ``path`` or None.

    Both ``x.tsv.gz-meta.yaml`` (GWAS-SSF convention) and ``x-meta.yaml`` are recognised.
    """
    path = Path(path)
    candidates = [path.with_name(path.name + "-meta.yaml")]
    stem = path.name
    for ext in (".gz", ".tsv", ".txt"):
        stem = stem.removesuffix(ext)
    candidates.append(path.with_name(stem + "-meta.yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".tsv", ".txt"):
        name = name.removesuffix(ext)
    return name


def read_study_info(path: Path, *, sidecar: Path | None = None) -> StudyInfo:
    """Read a study's sidecar (if present) into a :class:`StudyInfo`.

    Parameters
    ----------
    path : Path
        The GWAS-SSF table.
    sidecar : Path, optional
        Explicit sidecar; by default the one next to ``path`` is used when it exists.
    """
    import yaml

    path = Path(path)
    sidecar = Path(sidecar) if sidecar else sidecar_path(path)
    if sidecar is None:
        return StudyInfo(path=path, name=_stem(path))
    try:
        with open(sidecar, encoding="utf-8") as fh:
            meta = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise SumstatsError(
            f"{sidecar}: not valid YAML ({exc}); fix or remove the sidecar of {path}"
        ) from exc
    if not isinstance(meta, dict):
        raise SumstatsError(f"{sidecar}: expected a YAML mapping of GWAS-SSF metadata keys")
    fed = meta.get("fedgen") or {}
    samples = meta.get("samples") or []
    sizes = [s.get("sample_size") for s in samples if isinstance(s, dict)]
    sample_size = float(sum(x for x in sizes if x)) if any(sizes) else None
    assembly = meta.get("genome_assembly")
    if assembly:
        assembly = _ASSEMBLY_ALIASES.get(str(assembly).lower(), str(assembly))

    def _int(key: str) -> int | None:
        value = fed.get(key)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise SumstatsError(
                f"{sidecar}: fedgen.{key} must be an integer, got {value!r}"
            ) from exc

    panel = fed.get("aligned_panel")
    if panel is not None and not (isinstance(panel, str) and PANEL_DIGEST_RE.match(panel)):
        raise SumstatsError(
            f"{sidecar}: fedgen.aligned_panel must be 'sha256:' and 64 lower-case hex digits, "
            f"got {str(panel)[:80]!r}; re-export with fedgen sumstats export --aligned-to-panel "
            "PANEL or remove the key"
        )

    return StudyInfo(
        path=path,
        name=str(fed.get("site") or _stem(path)),
        sidecar=sidecar,
        assembly=assembly,
        trait_type=fed.get("trait_type"),
        n_cases=_int("n_cases"),
        n_controls=_int("n_controls"),
        sample_size=sample_size,
        refget_digest=fed.get("refget_seqcol_digest"),
        is_sorted=meta.get("is_sorted"),
        aligned_panel=panel,
        withheld=_int("variants_suppressed"),
        min_mac=_number(fed.get("min_mac")),
    )


def _number(value: object) -> float | None:
    """A sidecar number, or None when absent or not a number (it is only reported)."""
    try:
        return None if value in (None, "") else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def check_compatible(studies: list[StudyInfo]) -> str | None:
    """Refuse studies on different genome assemblies or reference digests.

    Returns
    -------
    str or None
        The common assembly, if any study declared one.

    Raises
    ------
    HarmonisationError
        Naming the studies and their assemblies (or digests).
    """
    assemblies = {s.name: s.assembly for s in studies if s.assembly}
    if len(set(assemblies.values())) > 1:
        listing = ", ".join(f"{n}={a}" for n, a in assemblies.items())
        raise HarmonisationError(
            f"studies are on different genome assemblies ({listing}); lift them over to one "
            "assembly before meta-analysis"
        )
    digests = {s.name: s.refget_digest for s in studies if s.refget_digest}
    if len(set(digests.values())) > 1:
        listing = ", ".join(f"{n}={d}" for n, d in digests.items())
        raise HarmonisationError(
            f"studies used different reference sequences (refget digests {listing}); "
            "re-export them against the same reference"
        )
    return next(iter(assemblies.values()), None)


def write_sidecar(path: Path, meta: dict[str, Any]) -> None:
    """Write a GWAS-SSF ``-meta.yaml`` sidecar atomically."""
    import yaml

    write_text_atomic(path, yaml.safe_dump(meta, sort_keys=False))


def panel_digest(path: Path) -> str:
    """Return ``sha256:<hex>`` of a reference panel file (the sidecar's ``fedgen.aligned_panel``).

    The digest is of the file's bytes: sites that aligned to the same panel file declare the same
    digest; a recompressed or re-indexed copy has another one.
    """
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise SumstatsError(
            f"{path}: cannot read the reference panel ({exc.strerror}); give the panel file "
            "the genotypes were aligned to"
        ) from None
    return f"sha256:{digest.hexdigest()}"


def md5sum(path: Path) -> str:
    """Return the MD5 hex digest of a file (the GWAS-SSF ``file_md5sum`` field)."""
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
