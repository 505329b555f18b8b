"""Site side of exact mode: per-variant sufficient statistics of ``y ~ C + g``.

For the pooled model ``y ~ C + g`` with ``C = [1, covariates..., site indicators]`` the normal
equations only need sums over samples. A site computes, once, ``C'C`` (k x k), ``C'y`` (k),
``y'y`` and ``n``, and per variant ``C'g`` (k), ``g'g`` and ``g'y``; the centre adds these over
sites and solves (:mod:`snakemake_fedgen.exact.solve`).

Samples with a missing phenotype or covariate are dropped (as ``plink2 --glm`` does). A missing
dosage is replaced by the mean dosage of that variant at the site (mean imputation): imputed
dosages from Beagle/Minimac have no missing values, so this only matters for hard-called data,
where it differs from ``plink2 --glm`` (which drops the sample for that variant). Per-variant
sample sets are avoided on purpose: they would let the centre difference two variants'
aggregates and read one sample's phenotype.

The aggregates file is a tab-separated text table a site steward can read::

    #fedgen-aggregates v1
    ##site=B
    ##sites=A,B,C
    ...
    ##n=812
    ##yty=...
    ##Cty=<k values>
    ##CtC=<k*(k+1)/2 values, upper triangle row by row>
    chromosome  base_pair_location  variant_id  other_allele  effect_allele  gtg  gty  Ctg.intercept ...

``effect_allele`` is the ALT allele whose dosage is ``g``. Variants failing the site's guards
(minor allele count below ``min_mac``) are not written at all.
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import ConfigError, EgressRefused, SiteDataError
from snakemake_executor_plugin_fedgen.fileio import atomic_write, open_text

# The table format and its disclosure check belong to the airlock's aggregates kind; this
# module writes and reads what that kind admits.
from snakemake_fedgen.egress.airlock.kinds.aggregates import (
    ALLELE_RE,
    FORMAT_LINE,
    NAME_RE,
    VARIANT_COLUMNS,
    parse_header,
)

__all__ = [
    "FORMAT_LINE",
    "MISSING_TOKENS",
    "SiteAggregates",
    "build_design",
    "compute_aggregates",
    "design_columns",
    "read_aggregates",
    "read_variant_table",
    "variant_keys",
    "write_aggregates",
]

#: Values read as missing in phenotype/covariate tables (plink2 also reads -9 as missing).
MISSING_TOKENS = frozenset({"", "NA", "na", "NaN", "nan", "-9", "."})
_CHUNK = 2048


def design_columns(
    covariates: Sequence[str], sites: Sequence[str], site_covariates: Sequence[str] = ()
) -> tuple[str, ...]:
    """Names of the columns of ``C``.

    Intercept, shared covariates (one slope for all sites), one indicator per site but the
    first (the reference level, so indicators are not collinear with the intercept), then
    site-specific covariates ``<name>.site_<S>`` for every site: covariates whose meaning is
    local to a site, such as principal components computed at each site, get a slope per site
    and are zero in other sites' rows.
    """
    return (
        "intercept",
        *covariates,
        *(f"site_{s}" for s in sites[1:]),
        *(f"{c}.site_{s}" for s in sites for c in site_covariates),
    )


def build_design(
    cov: np.ndarray,
    *,
    covariates: Sequence[str],
    site_covariates: Sequence[str],
    site: str,
    sites: Sequence[str],
) -> tuple[tuple[str, ...], np.ndarray]:
    """Return (column names, C) for a site's samples; ``cov`` holds shared then site columns."""
    columns = design_columns(covariates, sites, site_covariates)
    c_mat = np.zeros((cov.shape[0], len(columns)))
    c_mat[:, 0] = 1.0
    c_mat[:, 1 : 1 + len(covariates)] = cov[:, : len(covariates)]
    if list(sites).index(site) > 0:
        c_mat[:, columns.index(f"site_{site}")] = 1.0
    for j, name in enumerate(site_covariates):
        c_mat[:, columns.index(f"{name}.site_{site}")] = cov[:, len(covariates) + j]
    return columns, c_mat


@dataclass
class SiteAggregates:
    """Sufficient statistics of one site (or their sum over sites).

    Attributes
    ----------
    site : str
        Site name (``"+"``-joined names for a sum).
    sites : tuple of str
        Global site order that defines the indicator columns.
    trait : str
        Phenotype name.
    columns : tuple of str
        Names of the k columns of ``C`` (see :func:`design_columns`).
    n : int
        Number of samples used.
    yty : float
        ``y'y``.
    cty : ndarray, shape (k,)
        ``C'y``.
    ctc : ndarray, shape (k, k)
        ``C'C`` (symmetric).
    chrom, pos, vid, ref, alt : ndarray, shape (m,)
        Variant table (``alt`` is the allele whose dosage is ``g``).
    gtg, gty : ndarray, shape (m,)
        ``g'g`` and ``g'y`` per variant.
    ctg : ndarray, shape (m, k)
        ``C'g`` per variant; ``ctg[:, 0]`` is the ALT allele count.
    meta : dict
        Other header keys (guards, missing-dosage policy, counts), written as ``##key=value``.
    """

    site: str
    sites: tuple[str, ...]
    trait: str
    columns: tuple[str, ...]
    n: int
    yty: float
    cty: np.ndarray
    ctc: np.ndarray
    chrom: np.ndarray
    pos: np.ndarray
    vid: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    gtg: np.ndarray
    gty: np.ndarray
    ctg: np.ndarray
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of columns of ``C``."""
        return len(self.columns)

    @property
    def m(self) -> int:
        """Number of variants."""
        return len(self.gtg)

    def variant_keys(self) -> list[str]:
        """``chrom:pos:ref:alt`` per variant (the key sites are aligned on)."""
        return variant_keys(
            {"chrom": self.chrom, "pos": self.pos, "ref": self.ref, "alt": self.alt}
        )

    def subset(self, index: np.ndarray) -> SiteAggregates:
        """Return the aggregates of the variants at ``index`` (same once-per-site values)."""
        return SiteAggregates(
            site=self.site,
            sites=self.sites,
            trait=self.trait,
            columns=self.columns,
            n=self.n,
            yty=self.yty,
            cty=self.cty,
            ctc=self.ctc,
            chrom=self.chrom[index],
            pos=self.pos[index],
            vid=self.vid[index],
            ref=self.ref[index],
            alt=self.alt[index],
            gtg=self.gtg[index],
            gty=self.gty[index],
            ctg=self.ctg[index],
            meta=dict(self.meta),
        )


# --------------------------------------------------------------------------------------------
# Reading site inputs
# --------------------------------------------------------------------------------------------


def _read_header_table(path: Path, what: str) -> tuple[list[str], list[list[str]]]:
    """Read a whitespace-separated table whose header starts with FID/IID (``#`` optional)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc})") from exc
    rows = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    while rows and rows[0][1].startswith("##"):
        rows.pop(0)
    if not rows:
        raise ConfigError(f"{what} {path}: empty file; expected a header line '#FID IID ...'")
    header = rows[0][1].split()
    first = header[0].lstrip("#").upper()
    if first not in ("FID", "IID"):
        raise ConfigError(
            f"{what} {path}: line {rows[0][0]}: header must start with '#FID IID' or '#IID'; "
            f"got {rows[0][1][:60]!r}"
        )
    header[0] = header[0].lstrip("#")
    body = []
    for lineno, line in rows[1:]:
        parts = line.split()
        if len(parts) != len(header):
            raise ConfigError(
                f"{what} {path}: line {lineno} has {len(parts)} fields but the header has "
                f"{len(header)}; fix the table (whitespace-separated, one sample per line)"
            )
        body.append(parts)
    return header, body


def _sample_keys(header: list[str], body: list[list[str]], *, use_fid: bool) -> list[str]:
    iid = [h.upper() for h in header].index("IID")
    if use_fid:
        fid = [h.upper() for h in header].index("FID")
        return [f"{r[fid]}\t{r[iid]}" for r in body]
    return [r[iid] for r in body]


def variant_keys(variants: Mapping[str, Sequence[object] | np.ndarray]) -> list[str]:
    """``chrom:pos:ref:alt`` of every variant of a variant table (:func:`read_variant_table`)."""
    return [
        f"{c}:{p}:{r}:{a}"
        for c, p, r, a in zip(
            variants["chrom"], variants["pos"], variants["ref"], variants["alt"], strict=True
        )
    ]


def read_variant_table(path: Path) -> dict[str, np.ndarray]:
    """Read variants (CHROM POS ID REF ALT) from a ``.pvar`` or an aggregates/variants table.

    Returns
    -------
    dict
        ``chrom``, ``pos`` (int64), ``vid``, ``ref``, ``alt`` arrays of shape (m,).
    """
    path = Path(path)
    chrom, pos, vid, ref, alt = [], [], [], [], []
    header: list[str] | None = None
    try:
        handle = open_text(path, newline="\n")
    except OSError as exc:
        raise ConfigError(f"variant table {path}: cannot be read ({exc.strerror})") from exc
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if line.startswith("##") or (header is None and line.startswith("#fedgen-aggregates")):
                continue
            parts = line.rstrip("\n").split("\t")
            if header is None:
                header = [h.lstrip("#") for h in parts]
                if header[:5] != ["CHROM", "POS", "ID", "REF", "ALT"] and (
                    tuple(header[:5]) != VARIANT_COLUMNS
                ):
                    raise ConfigError(
                        f"variant table {path}: line {lineno}: header must start with "
                        f"'#CHROM POS ID REF ALT' (a .pvar) or {' '.join(VARIANT_COLUMNS)}; "
                        f"got {line[:60]!r}"
                    )
                continue
            if not line.strip():
                continue
            if len(parts) < 5:
                raise ConfigError(
                    f"variant table {path}: line {lineno} has {len(parts)} fields; expected at "
                    "least 5 (CHROM POS ID REF ALT)"
                )
            c, p, i, r, a = parts[:5]
            try:
                p_int = int(p)
            except ValueError as exc:
                raise ConfigError(
                    f"variant table {path}: line {lineno} column POS: {p!r} is not an integer"
                ) from exc
            chrom.append(c)
            pos.append(p_int)
            vid.append(i)
            ref.append(r)
            alt.append(a)
    if header is None:
        raise ConfigError(f"variant table {path}: no header line '#CHROM POS ID REF ALT'")
    return {
        "chrom": np.array(chrom, dtype=object),
        "pos": np.array(pos, dtype=np.int64),
        "vid": np.array(vid, dtype=object),
        "ref": np.array(ref, dtype=object),
        "alt": np.array(alt, dtype=object),
    }


def _parse_value(token: str, *, path: Path, lineno: int, column: str) -> float:
    if token in MISSING_TOKENS:
        return math.nan
    try:
        value = float(token)
    except ValueError as exc:
        raise ConfigError(
            f"phenotype table {path}: line {lineno} column {column!r}: {token!r} is not a "
            "number; use NA for a missing value"
        ) from exc
    return value if math.isfinite(value) else math.nan


def _load_model_data(
    psam: Path,
    pheno: Path,
    *,
    pheno_name: str,
    covar: Path | None,
    covar_names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (sorted .pgen sample indices kept, y, covariate matrix) aligned to each other."""
    psam_header, psam_body = _read_header_table(psam, "sample table")
    tables = {pheno: _read_header_table(pheno, "phenotype table")}
    if covar is not None and covar not in tables:
        tables[covar] = _read_header_table(covar, "covariate table")
    use_fid = "FID" in [h.upper() for h in psam_header] and all(
        "FID" in [h.upper() for h in hdr] for hdr, _ in tables.values()
    )
    psam_keys = _sample_keys(psam_header, psam_body, use_fid=use_fid)
    wanted = [(pheno, pheno_name)] + [(covar or pheno, c) for c in covar_names]
    values = np.full((len(psam_keys), len(wanted)), math.nan)
    index_of = {k: i for i, k in enumerate(psam_keys)}
    for j, (path, name) in enumerate(wanted):
        header, body = tables[path]
        if name not in header:
            what = "phenotype" if j == 0 else "covariate"
            raise ConfigError(
                f"{what} {name!r} is not a column of {path}; columns are {', '.join(header[1:])}"
            )
        col = header.index(name)
        keys = _sample_keys(header, body, use_fid=use_fid)
        for lineno, (key, row) in enumerate(zip(keys, body, strict=True), start=2):
            i = index_of.get(key)
            if i is not None:
                values[i, j] = _parse_value(row[col], path=path, lineno=lineno, column=name)
    keep = np.flatnonzero(np.isfinite(values).all(axis=1)).astype(np.uint32)
    return keep, values[keep, 0], values[keep, 1:]


# --------------------------------------------------------------------------------------------
# Computing
# --------------------------------------------------------------------------------------------


def compute_aggregates(
    pfile: Path | str,
    pheno: Path,
    *,
    pheno_name: str,
    site: str,
    sites: Sequence[str],
    covar: Path | None = None,
    covar_names: Sequence[str] = (),
    site_covar_names: Sequence[str] = (),
    min_n: int = 50,
    min_mac: float = 10.0,
) -> SiteAggregates:
    """Compute a site's aggregates from a PLINK 2 fileset and a phenotype table.

    Parameters
    ----------
    pfile : path
        Prefix of ``.pgen``/``.pvar``/``.psam`` (dosages are read as stored, as plink2 does).
    pheno : Path
        plink2-style phenotype table (header ``#FID IID ...`` or ``#IID ...``).
    pheno_name : str
        Column of ``pheno`` holding the quantitative trait.
    site : str
        This site's name; must be in ``sites``.
    sites : sequence of str
        Global site order (from the registry); defines the indicator columns.
    covar : Path, optional
        Covariate table (defaults to ``pheno``).
    covar_names : sequence of str
        Covariate columns with one slope shared by all sites (age, sex, ...).
    site_covar_names : sequence of str
        Covariate columns with a slope per site (e.g. PC1..PC5 from each site's own PCA).
    min_n, min_mac : number
        Guards: refuse if fewer than ``min_n`` samples; drop variants whose minor allele count
        (from the dosage sum) is below ``min_mac``.

    Returns
    -------
    SiteAggregates

    Raises
    ------
    ConfigError
        Bad inputs (unknown column, site not in ``sites``, unreadable files).
    EgressRefused
        Fewer than ``min_n`` usable samples.
    """
    import pgenlib

    sites = tuple(sites)
    if site not in sites:
        raise ConfigError(
            f"site {site!r} is not in the global site order {','.join(sites)}; pass the "
            "registry's site list with --sites (or --registry)"
        )
    if len(set(sites)) != len(sites):
        raise ConfigError(f"the global site order {','.join(sites)} repeats a site")
    if set(covar_names) & set(site_covar_names):
        raise ConfigError(
            f"covariate(s) {', '.join(sorted(set(covar_names) & set(site_covar_names)))} are "
            "both shared and site-specific; name each once"
        )
    for name in (pheno_name, *covar_names, *site_covar_names):
        if not NAME_RE.match(name):
            raise ConfigError(f"column name {name!r} must be letters, digits, '_', '.', '-'")
    prefix = str(pfile)
    pgen, pvar, psam = (Path(prefix + ext) for ext in (".pgen", ".pvar", ".psam"))
    for p in (pgen, pvar, psam):
        if not p.is_file():
            raise ConfigError(f"PLINK 2 fileset {prefix}: {p.name} not found")
    keep, y, cov = _load_model_data(
        psam,
        Path(pheno),
        pheno_name=pheno_name,
        covar=covar,
        covar_names=[*covar_names, *site_covar_names],
    )
    n = len(keep)
    if n < min_n:
        raise EgressRefused(
            f"site {site}: only {n} samples have {pheno_name} and all covariates, below "
            f"min_n={min_n}; this site cannot take part in exact mode"
        )
    columns, c_mat = build_design(
        cov, covariates=covar_names, site_covariates=site_covar_names, site=site, sites=sites
    )
    variants = read_variant_table(pvar)
    m_all = len(variants["pos"])
    # Multi-allelic and symbolic/lower-case alleles are skipped: the airlock admits only
    # A/C/G/T/N alleles, so one such variant would block the whole table.
    skipped = np.array(
        [
            not (ALLELE_RE.match(r) and ALLELE_RE.match(a))
            for r, a in zip(variants["ref"], variants["alt"], strict=True)
        ],
        dtype=bool,
    )

    raw_ct = _count_psam_rows(psam)
    reader = pgenlib.PgenReader(bytes(pgen), raw_sample_ct=raw_ct, sample_subset=keep)
    if reader.get_variant_ct() != m_all:
        raise ConfigError(
            f"PLINK 2 fileset {prefix}: .pgen has {reader.get_variant_ct()} variants but "
            f".pvar has {m_all}; regenerate the fileset"
        )
    gtg = np.empty(m_all)
    gty = np.empty(m_all)
    ctg = np.empty((m_all, len(columns)))
    buf = np.empty((_CHUNK, n))
    try:
        for start in range(0, m_all, _CHUNK):
            end = min(start + _CHUNK, m_all)
            dos = buf[: end - start]
            reader.read_dosages_range(start, end, dos)
            missing = dos < 0  # pgenlib writes -9 for a missing dosage
            if missing.any():
                counts = n - missing.sum(axis=1)
                sums = np.where(missing, 0.0, dos).sum(axis=1)
                means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
                dos[missing] = np.broadcast_to(means[:, None], dos.shape)[missing]
            gtg[start:end] = np.einsum("ij,ij->i", dos, dos)
            gty[start:end] = dos @ y
            ctg[start:end] = dos @ c_mat
    finally:
        reader.close()
    ac = ctg[:, 0]
    mac = np.minimum(ac, 2.0 * n - ac)
    passes = (mac >= min_mac) & ~skipped
    index = np.flatnonzero(passes)
    agg = SiteAggregates(
        site=site,
        sites=sites,
        trait=pheno_name,
        columns=columns,
        n=n,
        yty=float(y @ y),
        cty=c_mat.T @ y,
        ctc=c_mat.T @ c_mat,
        chrom=variants["chrom"][index],
        pos=variants["pos"][index],
        vid=variants["vid"][index],
        ref=variants["ref"][index],
        alt=variants["alt"][index],
        gtg=gtg[index],
        gty=gty[index],
        ctg=ctg[index],
        meta={
            "min_n": str(min_n),
            "min_mac": f"{min_mac:g}",
            "missing_dosage": "mean-imputed",
            "variants_suppressed": str(int(m_all - len(index))),
            "variants_skipped_alleles": str(int(skipped.sum())),
        },
    )
    return agg


def _count_psam_rows(psam: Path) -> int:
    with psam.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.startswith("#"))


# --------------------------------------------------------------------------------------------
# Writing and reading
# --------------------------------------------------------------------------------------------


def _fmt(values: Iterable[float]) -> str:
    # repr() is the shortest string that reads back to the same double: exact round trip.
    return ",".join(repr(float(v)) for v in values)


def _triu(mat: np.ndarray) -> np.ndarray:
    return mat[np.triu_indices(mat.shape[0])]


def _from_triu(values: np.ndarray, k: int) -> np.ndarray:
    mat = np.zeros((k, k))
    mat[np.triu_indices(k)] = values
    return mat + np.triu(mat, 1).T


def _write_lines(binary, lines: Iterable[str]) -> None:
    text = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
    for line in lines:
        text.write(line)
        text.write("\n")
    text.flush()
    text.detach()  # leave closing the binary stream to its owner


def atomic_write_text(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (each without newline) to ``path`` atomically (see
    :func:`~snakemake_executor_plugin_fedgen.fileio.atomic_write`)."""
    path = Path(path)
    with atomic_write(path, "wb") as raw:
        # A ".gz" name gets gzip content (the airlock checks that name and content agree).
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                _write_lines(gz, lines)
        else:
            _write_lines(raw, lines)


def write_aggregates(agg: SiteAggregates, path: Path) -> None:
    """Write ``agg`` as an aggregates table (atomically).

    Parameters
    ----------
    agg : SiteAggregates
    path : Path
        Output path, conventionally ``results/sumstats/{site}/{trait}.aggregates.tsv``.
    """

    def lines() -> Iterator[str]:
        yield FORMAT_LINE
        yield f"##site={agg.site}"
        yield f"##sites={','.join(agg.sites)}"
        yield f"##trait={agg.trait}"
        yield f"##columns={','.join(agg.columns)}"
        for key, value in agg.meta.items():
            yield f"##{key}={value}"
        yield f"##n={agg.n}"
        yield f"##yty={agg.yty!r}"
        yield f"##Cty={_fmt(agg.cty)}"
        yield f"##CtC={_fmt(_triu(agg.ctc))}"
        yield "\t".join((*VARIANT_COLUMNS, "gtg", "gty", *(f"Ctg.{c}" for c in agg.columns)))
        # One %-format per row over Python floats (%r is repr: shortest exact round trip).
        template = "\t".join(["%s"] * len(VARIANT_COLUMNS) + ["%r"] * (2 + agg.k))
        numbers = np.column_stack([agg.gtg, agg.gty, agg.ctg]).astype(np.float64).tolist()
        fields = zip(
            agg.chrom.tolist(), agg.pos.tolist(), agg.vid.tolist(), agg.ref.tolist(),
            agg.alt.tolist(), numbers, strict=True,
        )  # fmt: skip
        for chrom, pos, vid, ref, alt, row in fields:
            yield template % (chrom, pos, vid, ref, alt, *row)

    atomic_write_text(path, lines())


def read_aggregates(path: Path) -> SiteAggregates:
    """Read an aggregates table written by :func:`write_aggregates`.

    Raises
    ------
    SiteDataError
        The file is not an aggregates table or is malformed (names line and column).
    """
    path = Path(path)
    with open_text(path, newline="\n") as f:
        numbered = ((i, line.rstrip("\n")) for i, line in enumerate(f, start=1))
        meta = parse_header(numbered, str(path), FORMAT_LINE)
        rows = [line.split("\t") for _, line in numbered if line]
    try:
        columns = tuple(meta.pop("columns").split(","))
        k = len(columns)
        site = meta.pop("site")
        sites = tuple(meta.pop("sites").split(","))
        trait = meta.pop("trait")
        n = int(meta.pop("n"))
        yty = float(meta.pop("yty"))
        cty = np.array([float(v) for v in meta.pop("Cty").split(",")])
        ctc = _from_triu(np.array([float(v) for v in meta.pop("CtC").split(",")]), k)
    except (KeyError, ValueError) as exc:
        raise SiteDataError(
            f"{path}: header is missing or has a bad value for {exc}; regenerate it with "
            "`fedgen exact aggregate`"
        ) from exc
    header = meta.pop("__header__", "").split("\t")
    meta.pop("__header_line__", None)
    expected = [*VARIANT_COLUMNS, "gtg", "gty", *(f"Ctg.{c}" for c in columns)]
    if header != expected:
        raise SiteDataError(f"{path}: table header must be {' '.join(expected)}")
    if any(len(r) != len(expected) for r in rows):
        bad = next(i for i, r in enumerate(rows) if len(r) != len(expected))
        raise SiteDataError(f"{path}: data row {bad + 1} has the wrong number of fields")
    table = np.array(rows, dtype=object).reshape(len(rows), len(expected))
    numbers = table[:, 5:].astype(np.float64)
    return SiteAggregates(
        site=site,
        sites=sites,
        trait=trait,
        columns=columns,
        n=n,
        yty=yty,
        cty=cty,
        ctc=ctc,
        chrom=table[:, 0].astype(object),
        pos=table[:, 1].astype(np.int64),
        vid=table[:, 2].astype(object),
        ref=table[:, 3].astype(object),
        alt=table[:, 4].astype(object),
        gtg=numbers[:, 0].copy(),
        gty=numbers[:, 1].copy(),
        ctg=numbers[:, 2:].copy(),
        meta=meta,
    )
