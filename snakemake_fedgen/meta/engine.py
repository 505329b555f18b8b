"""The streaming meta-analysis: read every study chromosome by chromosome, harmonise, combine.

Peak memory is set by the largest chromosome (all studies' rows on it), not by the genome.
Outputs (``PREFIX`` from the caller):

* ``PREFIX.tsv.gz`` and ``PREFIX.tsv.gz-meta.yaml``: GWAS-SSF results plus meta columns;
* ``PREFIX.exclusions.tsv.gz``: every dropped row with its study and reason;
* ``PREFIX.studies.tsv``: per study rows read, kept, flipped, strand-flipped, palindromic rows
  aligned (and kept) under the reference study's panel, dropped by reason, genomic-control
  lambda, the declared panel;
* ``PREFIX.manhattan.png`` and ``PREFIX.qq.png``.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import ConfigError, SumstatsError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen import __version__
from snakemake_fedgen.meta import stats
from snakemake_fedgen.meta.harmonise import HARMONISATION_REASONS, Harmonised, harmonise
from snakemake_fedgen.sumstats.columns import CHROM_LABELS
from snakemake_fedgen.sumstats.reader import INVALID_REASONS, ChromBlock, Exclusion, StudyTable
from snakemake_fedgen.sumstats.sidecar import (
    StudyInfo,
    check_compatible,
    read_study_info,
    write_sidecar,
)
from snakemake_fedgen.sumstats.writer import (
    AtomicTsvGzWriter,
    float_array,
    p_value_array,
    round_significant,
)

SCHEMES = ("ivw", "samplesize", "both")


@dataclass(frozen=True)
class MetaOptions:
    """How to run the meta-analysis.

    Attributes
    ----------
    random : bool
        Add DerSimonian-Laird random-effects columns (``beta_random`` ...).
    gc : bool
        Genomic control per study: standard errors times sqrt(lambda) when lambda > 1.
    gc_result : bool
        Genomic control on the meta-analysis result (lambda > 1 only).
    maf_palindromic : float
        Palindromic SNPs are aligned by frequency below this minor allele frequency (unless the
        study and the reference study declare the same ``fedgen.aligned_panel``).
    scheme : str
        ``ivw`` (inverse variance), ``samplesize`` (METAL's weighted Z) or ``both``.
    drop_invalid : bool
        Count bad rows and duplicates as exclusions instead of stopping with an error.
    sort : bool
        Accept unsorted inputs (sorted on the fly through per-chromosome temporary files).
    plots : bool
        Write the Manhattan and QQ plots.
    digits : int
        Significant digits of floating-point output.
    """

    random: bool = False
    gc: bool = False
    gc_result: bool = False
    maf_palindromic: float = 0.4
    scheme: str = "ivw"
    drop_invalid: bool = False
    sort: bool = False
    plots: bool = True
    digits: int = 7

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if not 0.0 < self.maf_palindromic <= 0.5:
            raise ConfigError(
                f"maf_palindromic must be in (0, 0.5], got {self.maf_palindromic}; "
                "0.4 is the usual choice"
            )


@dataclass
class StudySummary:
    """Per-study counts and genomic-control lambda.

    ``palindromic_panel_aligned`` counts palindromic rows aligned by their alleles because the
    study and the variant's reference study declare the same panel (``aligned_panel``);
    ``palindromic_panel_kept`` those of them the frequency rule would have dropped.
    """

    name: str
    path: Path
    read: int = 0
    kept: int = 0
    flipped: int = 0
    strand_flipped: int = 0
    palindromic_panel_aligned: int = 0
    palindromic_panel_kept: int = 0
    aligned_panel: str | None = None
    withheld_at_site: int | None = None
    maf_floor_at_site: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    lambda_gc: float = float("nan")
    lambda_applied: bool = False
    weight_n: str = "n column"


@dataclass
class MetaResult:
    """What a meta-analysis produced."""

    outputs: dict[str, Path]
    variants: int
    lambda_meta: float
    lambda_meta_applied: bool
    studies: list[StudySummary]


def output_paths(prefix: str | Path) -> dict[str, Path]:
    """Paths of every output for ``prefix`` (keys: sumstats, sidecar, exclusions, studies,
    manhattan, qq)."""
    prefix = str(prefix)
    return {
        "sumstats": Path(prefix + ".tsv.gz"),
        "sidecar": Path(prefix + ".tsv.gz-meta.yaml"),
        "exclusions": Path(prefix + ".exclusions.tsv.gz"),
        "studies": Path(prefix + ".studies.tsv"),
        "manhattan": Path(prefix + ".manhattan.png"),
        "qq": Path(prefix + ".qq.png"),
    }


_EXCLUSION_COLUMNS = [
    "study",
    "chromosome",
    "base_pair_location",
    "effect_allele",
    "other_allele",
    "line",
    "reason",
]


def _unique_names(infos: list[StudyInfo]) -> list[StudyInfo]:
    seen: dict[str, int] = {}
    out = []
    for info in infos:
        count = seen.get(info.name, 0)
        seen[info.name] = count + 1
        if count:
            from dataclasses import replace

            info = replace(info, name=f"{info.name}#{count + 1}")
        out.append(info)
    return out


class _Prefetcher:
    """Read a study's chromosomes in a background thread, one chromosome ahead when allowed.

    Parsing and decompression (pyarrow, ISA-L) release the GIL, so reading the next chromosome
    overlaps with combining and writing the current one. The thread reads the next chromosome
    only after :meth:`release`, which the engine calls once the current chromosome has been
    harmonised: reading never adds to the harmonisation's peak memory. Errors are raised in the
    caller's thread.
    """

    _DONE = object()

    def __init__(self, table: StudyTable) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._go = threading.Semaphore(0)
        self._stop = threading.Event()
        self._table = table
        self._thread = threading.Thread(
            target=self._work, daemon=True, name=f"read-{table.info.name}"
        )
        self._thread.start()

    def _work(self) -> None:
        try:
            for block in self._table.chromosomes():
                self._queue.put(block)
                del block
                self._go.acquire()
                if self._stop.is_set():
                    return
            self._queue.put(self._DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._queue.put(exc)

    def next(self) -> ChromBlock | None:
        """The next chromosome's block, or None at the end of the file."""
        item = self._queue.get()
        if item is self._DONE:
            self._queue.put(item)  # stay at the end
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self) -> None:
        """Let the thread read the next chromosome."""
        self._go.release()

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._go.release()
        self._thread.join(timeout=5)


def _merge_chromosomes(
    tables: list[StudyTable],
) -> Iterator[tuple[list[ChromBlock | None], Any]]:
    """Walk all studies' chromosomes in step.

    Yields one list of blocks (None where a study lacks the chromosome) and a ``release``
    callable; call it (and empty the list) once the blocks have been harmonised, so that the
    next chromosome is read while this one is combined and written.
    """
    readers = [_Prefetcher(t) for t in tables]
    try:
        heads: list[ChromBlock | None] = [r.next() for r in readers]
        while any(h is not None for h in heads):
            chrom = min(h.chrom for h in heads if h is not None)
            blocks = [h if h is not None and h.chrom == chrom else None for h in heads]
            used = [i for i, b in enumerate(blocks) if b is not None]
            for i in used:
                heads[i] = None

            def release(used: list[int] = used) -> None:
                for i in used:
                    readers[i].release()

            yield blocks, release
            del blocks
            for i in used:
                heads[i] = readers[i].next()
    finally:
        for r in readers:
            r.close()


def _exclusion_table(items: list[Exclusion]) -> Any:
    import pyarrow as pa

    def cat(name):
        return np.concatenate([getattr(x, name) for x in items])

    chrom = cat("chrom").astype(np.int64)
    labels = np.array(CHROM_LABELS, dtype=object)[chrom]
    return pa.table(
        {
            "study": pa.array(
                np.concatenate([np.full(len(x.pos), x.study, dtype=object) for x in items])
            ),
            "chromosome": pa.array(labels),
            "base_pair_location": pa.array(cat("pos")),
            "effect_allele": pa.array(cat("ea")),
            "other_allele": pa.array(cat("oa")),
            "line": pa.array(cat("line")),
            "reason": pa.array(
                np.concatenate([np.full(len(x.pos), x.reason, dtype=object) for x in items])
            ),
        }
    )


def _direction_grid(h: Harmonised, n_studies: int) -> np.ndarray:
    """One byte per variant and study: ``+ - 0`` from the aligned beta, ``?`` where missing."""
    grid = np.full((h.n_variants, n_studies), ord("?"), dtype=np.uint8)
    grid[h.variant, h.study] = np.where(
        h.beta > 0, ord("+"), np.where(h.beta < 0, ord("-"), ord("0"))
    )
    return grid


def _direction(grid: np.ndarray) -> Any:
    """GWAMA-style direction strings (one character per study, in input order)."""
    import pyarrow as pa

    n_studies = grid.shape[1]
    flat = np.ascontiguousarray(grid).view(f"S{n_studies}").ravel()
    return pa.array(flat, type=pa.binary(n_studies)).cast(pa.string())


def _float(values: np.ndarray, digits: int) -> Any:

    return float_array(round_significant(values, digits))


def _combine(
    h: Harmonised,
    *,
    options: MetaOptions,
    n_studies: int,
    weight_n: list[float | None],
) -> tuple[Any, list[str], np.ndarray, np.ndarray]:
    """Meta-analyse one harmonised chromosome.

    Returns a function that builds the output table (rounding and Arrow conversion, run by
    the writer's thread), its column names, and the primary log10 p and z.
    """
    nv = h.n_variants
    fixed = stats.fixed_effects(h.variant, h.beta, h.se, nv)
    k = np.bincount(h.variant, minlength=nv)
    total_n = np.bincount(h.variant, weights=h.n, minlength=nv)
    ok = np.isfinite(h.eaf) & np.isfinite(h.n)
    with np.errstate(invalid="ignore", divide="ignore"):
        eaf = np.bincount(h.variant[ok], weights=h.eaf[ok] * h.n[ok], minlength=nv) / np.bincount(
            h.variant[ok], weights=h.n[ok], minlength=nv
        )
        has_eaf = np.isfinite(h.eaf)
        plain = np.bincount(h.variant[has_eaf], weights=h.eaf[has_eaf], minlength=nv) / np.bincount(
            h.variant[has_eaf], minlength=nv
        )
    eaf = np.where(np.isfinite(eaf), eaf, plain)

    z, beta, se = fixed.z, fixed.beta, fixed.se
    ss_z = None
    if options.scheme != "ivw":
        wn = np.array([np.nan if w is None else w for w in weight_n])[h.study]
        wn = np.where(np.isnan(wn), h.n, wn)
        ss_z = stats.samplesize_z(h.variant, h.beta, h.se, wn, nv)
        if options.scheme == "samplesize":
            z = ss_z
    log10p = stats.log10_p_from_z(z)
    # (kind, values): "f" rounded float, "p" p-value from log10 p, "raw" as is.
    spec: dict[str, tuple[str, Any]] = {
        "chromosome": ("chrom", CHROM_LABELS[h.chrom]),
        "base_pair_location": ("raw", h.pos),
        "effect_allele": ("str", h.effect_allele),
        "other_allele": ("str", h.other_allele),
        "beta": ("f", beta),
        "standard_error": ("f", se),
        "effect_allele_frequency": ("f", eaf),
        "p_value": ("p", log10p),
        "neg_log_10_p_value": ("f", -log10p),
        "z": ("f", z),
    }
    if options.random:
        rnd = stats.random_effects(h.variant, h.beta, h.se, fixed)
        rp = stats.log10_p_from_z(rnd.z)
        spec["beta_random"] = ("f", rnd.beta)
        spec["standard_error_random"] = ("f", rnd.se)
        spec["z_random"] = ("f", rnd.z)
        spec["p_value_random"] = ("p", rp)
        spec["neg_log_10_p_value_random"] = ("f", -rp)
        spec["tau2"] = ("f", rnd.tau2)
    if options.scheme == "both":
        sp = stats.log10_p_from_z(ss_z)
        spec["z_samplesize"] = ("f", ss_z)
        spec["p_value_samplesize"] = ("p", sp)
        spec["neg_log_10_p_value_samplesize"] = ("f", -sp)
    qp = stats.log10_chi2_sf(fixed.q, fixed.df)
    spec["q"] = ("f", fixed.q)
    spec["q_p_value"] = ("p", qp)
    spec["i2"] = ("f", fixed.i2)
    spec["direction"] = ("direction", _direction_grid(h, n_studies))
    spec["n_studies"] = ("raw", k)
    spec["n"] = ("f", total_n)
    digits = options.digits

    def build() -> Any:
        import pyarrow as pa

        cols: dict[str, Any] = {}
        for name, (kind, values) in spec.items():
            if kind == "f":
                cols[name] = _float(values, digits)
            elif kind == "p":
                cols[name] = p_value_array(values, digits)
            elif kind == "chrom":
                cols[name] = pa.repeat(pa.scalar(values, pa.string()), nv)
            elif kind == "str":
                cols[name] = pa.array(values, type=pa.string())
            elif kind == "direction":
                cols[name] = _direction(values)
            else:
                cols[name] = pa.array(values)
        return pa.table(cols)

    return build, list(spec), log10p, z


def _study_lambda(table: StudyTable) -> float:
    """Genomic-control lambda of one study from all its rows (a separate reading pass)."""
    z2 = [(b.beta / b.se) ** 2 for b in table.chromosomes()]
    if not z2:
        return float("nan")
    return float(np.median(np.concatenate(z2)) / stats.CHI2_MEDIAN_1DF)


def run_meta(
    paths: Sequence[str | Path],
    *,
    out: str | Path,
    options: MetaOptions | None = None,
) -> MetaResult:
    """Meta-analyse GWAS-SSF tables into ``out``-prefixed outputs.

    Parameters
    ----------
    paths : sequence of path
        GWAS-SSF ``.tsv``/``.tsv.gz`` files, one per study; their ``-meta.yaml`` sidecars are
        used when present. Input order fixes the direction string and the reference alleles.
    out : path
        Output prefix (``out.tsv.gz`` etc., see :func:`output_paths`).
    options : MetaOptions, optional

    Raises
    ------
    SumstatsError
        A table is malformed (the message names file, line and column).
    HarmonisationError
        Studies on different assemblies or reference digests.
    """
    options = options or MetaOptions()
    if len(paths) < 1:
        raise ConfigError("give at least one GWAS-SSF file to meta-analyse")
    infos = _unique_names([read_study_info(Path(p)) for p in paths])
    assembly = check_compatible(infos)
    outputs = output_paths(out)
    names = [i.name for i in infos]
    files = [i.path for i in infos]
    n_studies = len(infos)

    def table(info: StudyInfo) -> StudyTable:
        return StudyTable(
            info,
            drop_invalid=options.drop_invalid,
            sort=options.sort or info.is_sorted is False,
            tmpdir=outputs["sumstats"].parent,
        )

    tables = [table(i) for i in infos]
    summaries = [
        StudySummary(
            i.name,
            i.path,
            aligned_panel=i.aligned_panel,
            withheld_at_site=i.withheld,
            maf_floor_at_site=i.maf_floor,
        )
        for i in infos
    ]
    panels = [i.aligned_panel for i in infos]
    weight_n: list[float | None] = []
    for info, summary in zip(infos, summaries, strict=True):
        neff = info.effective_n if info.trait_type == "binary" else None
        weight_n.append(neff)
        if neff is not None:
            summary.weight_n = f"effective N {neff:.1f}"
        elif info.trait_type == "binary" and options.scheme != "ivw":
            summary.weight_n = "n column (no n_cases/n_controls in the sidecar)"

    lambdas: list[float] | None = None
    if options.gc:
        lambdas = [_study_lambda(table(i)) for i in infos]
    z2_store: list[list[np.ndarray]] = [[] for _ in infos]
    plot_chrom: list[np.ndarray] = []
    plot_pos: list[np.ndarray] = []
    plot_log10p: list[np.ndarray] = []
    result_z: list[np.ndarray] = []
    outputs["sumstats"].parent.mkdir(parents=True, exist_ok=True)

    gc_stage = options.gc_result
    result_path = outputs["sumstats"]
    stage_path = result_path
    if gc_stage:
        # A scratch table (re-read and rewritten with the GC correction), not an output.
        fd, name = tempfile.mkstemp(prefix=".stage-", suffix=".tsv.gz", dir=result_path.parent)
        os.close(fd)
        stage_path = Path(name)
    variants = 0
    try:
        with (
            AtomicTsvGzWriter(stage_path) as writer,
            AtomicTsvGzWriter(outputs["exclusions"]) as excl_writer,
        ):
            excl_writer.write_header(_EXCLUSION_COLUMNS)
            for blocks, release in _merge_chromosomes(tables):
                for s, block in enumerate(blocks):
                    if block is None:
                        continue
                    if lambdas is None:
                        z2_store[s].append(((block.beta / block.se) ** 2).astype(np.float32))
                    elif options.gc and lambdas[s] > 1:
                        block.se = block.se * np.sqrt(lambdas[s])
                block = None
                h = harmonise(
                    blocks,
                    studies=names,
                    paths=files,
                    maf_palindromic=options.maf_palindromic,
                    drop_duplicates=options.drop_invalid,
                    panels=panels,
                )
                blocks.clear()  # the aligned rows live on in h; free the raw ones now
                release()  # read the next chromosome while this one is combined and written
                if options.scheme != "ivw":
                    _check_n(h, weight_n, names)
                build, columns, log10p, out_z = _combine(
                    h, options=options, n_studies=n_studies, weight_n=weight_n
                )
                writer.write_table(build, columns=columns, rows=h.n_variants)
                variants += h.n_variants
                plot_chrom.append(np.full(h.n_variants, h.chrom, dtype=np.int8))
                plot_pos.append(h.pos.astype(np.int64))
                plot_log10p.append(log10p.astype(np.float32))
                result_z.append(out_z.astype(np.float32))
                kept = np.bincount(h.study, minlength=n_studies)
                for s, summary in enumerate(summaries):
                    summary.kept += int(kept[s])
                    summary.flipped += int(h.flipped[s])
                    summary.strand_flipped += int(h.strand_flipped[s])
                    summary.palindromic_panel_aligned += int(h.palindromic_panel_aligned[s])
                    summary.palindromic_panel_kept += int(h.palindromic_panel_kept[s])
                pending = list(h.exclusions)
                for t in tables:
                    pending.extend(t.exclusions)
                    t.exclusions.clear()
                _record_exclusions(pending, summaries, names, excl_writer)
                # Free this chromosome before the next one is harmonised.
                del h, build, log10p, out_z, pending
            pending = [e for t in tables for e in t.exclusions]
            _record_exclusions(pending, summaries, names, excl_writer)
            if variants == 0:
                raise SumstatsError(
                    f"no variant left to meta-analyse in {', '.join(map(str, files))}; "
                    f"see {outputs['exclusions']}"
                )
    except BaseException:
        if gc_stage:
            Path(stage_path).unlink(missing_ok=True)
        raise

    for s, (t, summary) in enumerate(zip(tables, summaries, strict=True)):
        summary.read = t.rows_read
        if lambdas is not None:
            summary.lambda_gc = lambdas[s]
            summary.lambda_applied = lambdas[s] > 1
        elif z2_store[s]:
            summary.lambda_gc = float(
                np.median(np.concatenate(z2_store[s]).astype(np.float64)) / stats.CHI2_MEDIAN_1DF
            )
    del z2_store

    log10p_all = np.concatenate(plot_log10p)
    z_all = np.concatenate(result_z).astype(np.float64)
    del result_z
    lambda_meta = stats.gc_lambda(z_all)
    applied = bool(options.gc_result and lambda_meta > 1)
    if gc_stage:
        try:
            _apply_result_gc(stage_path, result_path, lambda_meta if applied else 1.0, options)
        finally:
            Path(stage_path).unlink(missing_ok=True)
        if applied:
            log10p_all = stats.log10_p_from_z(z_all / np.sqrt(lambda_meta)).astype(np.float32)

    _write_studies(outputs["studies"], summaries)
    _write_result_sidecar(
        outputs,
        infos=infos,
        summaries=summaries,
        options=options,
        assembly=assembly,
        lambda_meta=lambda_meta,
        applied=applied,
        variants=variants,
    )
    if options.plots:
        from snakemake_fedgen.meta import plots

        chrom_all = np.concatenate(plot_chrom)
        pos_all = np.concatenate(plot_pos)
        plots.manhattan(outputs["manhattan"], chrom=chrom_all, pos=pos_all, neg_log10_p=-log10p_all)
        plots.qq(outputs["qq"], neg_log10_p=-log10p_all, lambda_gc=lambda_meta)
    return MetaResult(
        outputs=outputs,
        variants=variants,
        lambda_meta=lambda_meta,
        lambda_meta_applied=applied,
        studies=summaries,
    )


def _check_n(h: Harmonised, weight_n: list[float | None], names: list[str]) -> None:
    missing = np.isnan(h.n) & np.array([w is None for w in weight_n])[h.study]
    if missing.any():
        s = int(h.study[np.flatnonzero(missing)[0]])
        raise SumstatsError(
            f"study {names[s]}: no sample size for the sample-size scheme; add an 'n' column, "
            "samples[].sample_size or fedgen.n_cases/n_controls to its -meta.yaml, or use "
            "--scheme ivw"
        )


def _record_exclusions(
    items: list[Exclusion],
    summaries: list[StudySummary],
    names: list[str],
    writer: AtomicTsvGzWriter,
) -> None:
    items = [e for e in items if len(e.pos)]
    if not items:
        return
    for e in items:
        summary = summaries[names.index(e.study)]
        summary.dropped[e.reason] = summary.dropped.get(e.reason, 0) + len(e.pos)
    writer.write_table(_exclusion_table(items))


def _apply_result_gc(stage: Path, final: Path, lam: float, options: MetaOptions) -> None:
    """Copy the staged result to ``final``, dividing z by sqrt(lambda) (and p, se to match)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    root = float(np.sqrt(lam))
    suffixes = [""] + (["_random"] if options.random else [])
    reader = pacsv.open_csv(
        str(stage),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={
                "chromosome": pa.string(),
                "p_value": pa.string(),
                "p_value_random": pa.string(),
                "q_p_value": pa.string(),
                "p_value_samplesize": pa.string(),
                "direction": pa.string(),
            },
            null_values=["NA"],
            strings_can_be_null=True,
        ),
    )
    with AtomicTsvGzWriter(final) as writer:
        for batch in reader:
            t = pa.Table.from_batches([batch])
            for suffix in suffixes:
                z = t.column("z" + suffix).to_numpy(zero_copy_only=False) / root
                lp = stats.log10_p_from_z(z)
                se = t.column("standard_error" + suffix).to_numpy(zero_copy_only=False) * root
                t = t.set_column(
                    t.column_names.index("z" + suffix), "z" + suffix, _float(z, options.digits)
                )
                t = t.set_column(
                    t.column_names.index("standard_error" + suffix),
                    "standard_error" + suffix,
                    _float(se, options.digits),
                )
                t = t.set_column(
                    t.column_names.index("p_value" + suffix),
                    "p_value" + suffix,
                    p_value_array(lp, options.digits),
                )
                t = t.set_column(
                    t.column_names.index("neg_log_10_p_value" + suffix),
                    "neg_log_10_p_value" + suffix,
                    _float(-lp, options.digits),
                )
            writer.write_table(t)


def _write_studies(path: Path, summaries: list[StudySummary]) -> None:
    reasons = list(INVALID_REASONS) + [r for r in HARMONISATION_REASONS if r not in INVALID_REASONS]
    header = [
        "study",
        "file",
        "read",
        "kept",
        "flipped",
        "strand_flipped",
        "palindromic_panel_aligned",
        "palindromic_panel_kept",
        *(f"dropped_{r}" for r in reasons),
        "lambda_gc",
        "lambda_applied",
        "weight_n",
        "aligned_panel",
        "withheld_at_site",
        "maf_floor_at_site",
    ]
    lines = ["\t".join(header)]
    for s in summaries:
        lines.append(
            "\t".join(
                [
                    s.name,
                    str(s.path),
                    str(s.read),
                    str(s.kept),
                    str(s.flipped),
                    str(s.strand_flipped),
                    str(s.palindromic_panel_aligned),
                    str(s.palindromic_panel_kept),
                    *(str(s.dropped.get(r, 0)) for r in reasons),
                    "NA" if np.isnan(s.lambda_gc) else f"{s.lambda_gc:.6f}",
                    str(s.lambda_applied).lower(),
                    s.weight_n,
                    s.aligned_panel or "NA",
                    "NA" if s.withheld_at_site is None else str(s.withheld_at_site),
                    "NA" if s.maf_floor_at_site is None else f"{s.maf_floor_at_site:.4g}",
                ]
            )
        )
    write_text_atomic(path, "\n".join(lines) + "\n")


def _write_result_sidecar(
    outputs: dict[str, Path],
    *,
    infos: list[StudyInfo],
    summaries: list[StudySummary],
    options: MetaOptions,
    assembly: str | None,
    lambda_meta: float,
    applied: bool,
    variants: int,
) -> None:
    from snakemake_fedgen.sumstats.sidecar import md5sum

    sizes = [i.sample_size for i in infos]
    meta: dict[str, Any] = {
        "file_type": "GWAS-SSF v1.0",
        "data_file_name": outputs["sumstats"].name,
        "file_md5sum": md5sum(outputs["sumstats"]),
        "genome_assembly": assembly or "unknown",
        "coordinate_system": "1-based",
        "is_harmonised": True,
        "is_sorted": True,
        "analysis_software": f"snakemake-fedgen {__version__} (fedgen meta)",
        "date_last_modified": _dt.date.today().isoformat(),
        "samples": [{"sample_size": int(sum(x for x in sizes if x)) if any(sizes) else None}],
        "fedgen_meta": {
            "method": "inverse-variance fixed effect"
            if options.scheme != "samplesize"
            else "sample-size weighted Z (METAL SAMPLESIZE)",
            "random_effects": "DerSimonian-Laird" if options.random else None,
            "scheme": options.scheme,
            "genomic_control_studies": options.gc,
            "genomic_control_result": options.gc_result,
            "lambda_meta": None if np.isnan(lambda_meta) else round(float(lambda_meta), 6),
            "lambda_meta_applied": applied,
            "maf_palindromic": options.maf_palindromic,
            "variants": variants,
            "studies": [
                {
                    "name": s.name,
                    "file": str(s.path),
                    "site": i.name,
                    "trait_type": i.trait_type,
                    "lambda_gc": None if np.isnan(s.lambda_gc) else round(float(s.lambda_gc), 6),
                    "lambda_applied": s.lambda_applied,
                    "read": s.read,
                    "kept": s.kept,
                    "aligned_panel": s.aligned_panel,
                    "palindromic_panel_aligned": s.palindromic_panel_aligned,
                    "palindromic_panel_kept": s.palindromic_panel_kept,
                }
                for s, i in zip(summaries, infos, strict=True)
            ],
        },
    }
    write_sidecar(outputs["sidecar"], meta)
