"""The pure parts of the defences: URL canonicalisation, visa rules, caller areas, root mapping."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError, StorageError

from snakemake_fedgen.governance.datasets import DatasetRules, local_path
from snakemake_fedgen.node.areas import SiteRoots, area_of, is_area_name
from snakemake_fedgen.node.auth import Caller


@pytest.mark.parametrize(
    "url",
    [
        "/srv/data/cohort/g.vcf",
        "file:///srv/data/cohort/g.vcf",
        "file://localhost/srv/data/cohort/g.vcf",
        "FILE://LOCALHOST/srv/data/cohort/g.vcf",
        "file:////srv/data/cohort/g.vcf",
        "file:///srv//data/./cohort/g.vcf",
        "file:///srv/data/%63ohort/g.vcf",
        "file:/srv/data/cohort/g.vcf",
        "file:///srv/data/cohort%2Fg.vcf",
    ],
)
def test_local_path__every_spelling_is_one_path(url):
    assert local_path(url) == PurePosixPath("/srv/data/cohort/g.vcf")


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("file://other-host/srv/x", "names host"),
        ("file:///srv/../etc/passwd", "'..'"),
        ("file:///srv/%2e%2e/etc/passwd", "'..'"),
        ("file:///srv/x?y", "query"),
        ("file:///srv/x#y", "query"),
        ("s3://bucket/x", "not a file://"),
        ("srv/x", "not a file://"),
        ("file:///srv/x%00y", "not an absolute path"),
    ],
)
def test_local_path__refuses_other_hosts_traversal_and_ambiguity(url, fragment):
    with pytest.raises(StorageError, match=fragment):
        local_path(url)


def test_dataset_rules__resolved_and_matched_on_real_paths(tmp_path):
    data = tmp_path / "data"
    (data / "cohort").mkdir(parents=True)
    (data / "cohort" / "g.vcf").write_text("g")
    (data / "EGAD1_chr1.vcf").write_text("x")
    (data / "public.txt").write_text("p")
    (tmp_path / "alias").symlink_to(data)
    rules = DatasetRules(
        {
            # Spelled through a symlink and percent-encoded: still the same directory.
            f"file://localhost{tmp_path}/alias/%63ohort/": "DS-COHORT",
            f"{data}/EGAD1_": "DS-PREFIX",
        }
    )
    assert rules.for_input(f"{data}/cohort/g.vcf") == {"DS-COHORT"}
    assert rules.for_input(f"FILE://{tmp_path}/alias/./cohort//g.vcf") == {"DS-COHORT"}
    assert rules.for_input(f"{data}/EGAD1_chr1.vcf") == {"DS-PREFIX"}
    assert rules.for_input(f"{data}/public.txt") == set()
    assert rules.for_input(str(data), kind="DIRECTORY") == {"DS-COHORT", "DS-PREFIX"}
    assert rules.for_input(str(tmp_path), kind="DIRECTORY") == {"DS-COHORT", "DS-PREFIX"}
    assert rules.for_input(f"{data}/cohort", kind="DIRECTORY") == {"DS-COHORT"}


def test_area_of__whole_identity_safe_and_collision_free():
    areas = {
        area_of(Caller("alice")),
        area_of(Caller("alice", {"iss": "https://a/"}, kind="jwt")),
        area_of(Caller("alice", {"iss": "https://b/"}, kind="jwt")),
        # iss/sub boundaries cannot be shifted to collide.
        area_of(Caller("b/alice", {"iss": "https://a"}, kind="jwt")),
        area_of(Caller("anonymous", kind="anonymous")),
        area_of(Caller("anonymous")),
        area_of(Caller("../../evil")),
        area_of(Caller("a/b")),
    }
    assert len(areas) == 8
    for area in areas:
        assert "/" not in area and area not in (".", "..") and is_area_name(area), area
    assert area_of(Caller("alice")) == "static-alice"


def test_site_roots__longest_root_decides_and_areas_map_write_roots(tmp_path):
    site = tmp_path / "site"
    work, egress, data = site / "work", site / "work" / "egress", site / "work" / "ref"
    for d in (egress, data):
        d.mkdir(parents=True)
    roots = SiteRoots(read_roots=[data], write_roots=[work], egress_root=egress)
    assert roots.physical(f"file://{work}/x/y.txt", "static-a") == work / "static-a/x/y.txt"
    assert roots.physical(f"{egress}/A/s.tsv", "static-a") == egress / "static-a/A/s.tsv"
    assert roots.physical(f"{data}/r.fa", "static-a") == data / "r.fa"
    assert roots.physical("/elsewhere/x", "static-a") is None
    target = roots.output_target(f"{egress}/A/s.tsv", area="static-a", what="o")
    assert target.root.egress and target.path == egress / "static-a/A/s.tsv"
    with pytest.raises(StorageError, match="read-only root"):
        roots.output_target(f"{data}/overwrite.fa", area="static-a", what="o")
    assert roots.allowed(work / "static-a" / "f", "static-a")
    assert not roots.allowed(work / "static-b" / "f", "static-a")
    assert not roots.allowed(egress / "static-b" / "f", "static-a")
    assert not roots.allowed(work / "f", "static-a")
    with pytest.raises(ConfigError, match="areas"):
        SiteRoots(write_roots=[work], egress_root=work / "static-x")


def test_site_roots__private_paths_and_their_parents_are_never_inputs(tmp_path):
    data = tmp_path / "data"
    state = data / "state"
    state.mkdir(parents=True)
    (state / "tasks.sqlite").write_text("db")
    roots = SiteRoots(read_roots=[data], private=[state])
    with pytest.raises(StorageError, match="outside the allowed roots"):
        roots.input_path(f"{state}/tasks.sqlite", kind="FILE", area="static-a", what="i")
    with pytest.raises(StorageError, match="node's own"):
        roots.input_path(str(data), kind="DIRECTORY", area="static-a", what="i")
    assert Path(roots.physical(str(data), "static-a")) == data
