"""What a federated run leaves on the coordinator: tables, and the scan for individual data."""

from __future__ import annotations

import gzip
from pathlib import Path

from snakemake_executor_plugin_fedgen.reference import is_reference


def table_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a tab-separated table (plain or gzip; ``##`` lines skipped, ``#`` header)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("##")]
    header = lines[0].lstrip("#").split("\t")
    return [dict(zip(header, ln.split("\t"), strict=True)) for ln in lines[1:]]


def magic(path: Path) -> bytes:
    """The first 4 KiB of a file, decompressed if it is gzip."""
    head = path.read_bytes()[:4096]
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(4096)
        except (OSError, EOFError):
            pass
    return head


def coordinator_files(work: Path) -> list[Path]:
    """Every regular file the run wrote in the coordinator's working directory."""
    return [p for p in work.rglob("*") if p.is_file() and not p.is_symlink()]


def assert_no_individual_level_data(
    work: Path, sample_ids: set[str], *, min_files: int, directory_markers: bool = False
) -> None:
    """No VCF/BCF/PLINK file and no sample ID anywhere under ``work``; site outputs are references.

    ``directory_markers`` allows Snakemake's empty ``.snakemake_timestamp`` in a ``directory()``
    output under ``work/sites``.
    """
    files = coordinator_files(work)
    assert len(files) > min_files
    for path in files:
        head = magic(path)
        assert not head.startswith(b"##fileformat=VCF"), path
        assert not head.startswith(b"BCF\x02"), path
        assert not head.startswith(b"l\x1b"), f"{path}: PLINK .bed/.pgen magic"
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                data = f.read()
        text = data.decode("utf-8", errors="replace")
        leaked = [s for s in sample_ids if s in text]
        assert not leaked, f"{path} holds sample IDs {leaked[:3]}"
    site_outputs = [p for p in (work / "sites").rglob("*") if p.is_file()]
    assert site_outputs
    for path in site_outputs:
        if directory_markers and path.name == ".snakemake_timestamp":
            assert path.stat().st_size == 0, path
            continue
        assert is_reference(path), f"{path} is site data on the coordinator"
