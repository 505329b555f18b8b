"""References: JSON stand-ins for site-held data on the coordinator."""

from __future__ import annotations

import pytest
from snakemake_executor_plugin_fedgen.errors import SiteDataError
from snakemake_executor_plugin_fedgen.reference import (
    DIRECTORY_REFERENCE,
    Reference,
    is_reference,
    read_reference,
    require_local_data,
    write_reference,
)


def test_write_reference__round_trips_and_is_recognised(tmp_path):
    ref = Reference(site="A", url="file:///srv/a/x.bed", size=10, sha256="ab" * 32, task="t1")
    path = tmp_path / "out" / "x.bed"
    write_reference(path, ref)
    assert read_reference(path) == ref
    assert is_reference(path)
    assert [p.name for p in path.parent.iterdir()] == ["x.bed"]  # no temp file left


def test_write_reference__directory_output_holds_reference_inside(tmp_path):
    ref = Reference(site="B", url="file:///srv/b/dir", is_directory=True, task="t2")
    path = tmp_path / "plink_dir"
    write_reference(path, ref)
    assert path.is_dir() and (path / DIRECTORY_REFERENCE).is_file()
    assert read_reference(path) == ref


def test_read_reference__ordinary_data_is_not_a_reference(tmp_path):
    data = tmp_path / "table.json"
    data.write_text('{"site": "A", "url": "file:///x"}')
    assert read_reference(data) is None
    assert read_reference(tmp_path / "missing") is None


def test_require_local_data__reference_raises_naming_site(tmp_path):
    path = tmp_path / "geno.vcf.gz"
    write_reference(path, Reference(site="A", url="file:///srv/a/geno.vcf.gz"))
    with pytest.raises(SiteDataError, match="held at site A"):
        require_local_data(path)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert require_local_data(plain) == plain
