"""``fedgen simulate``: layout, file formats, registry and determinism of a tiny federation."""

from __future__ import annotations

import gzip
import itertools
import subprocess
from pathlib import Path

import yaml
from snakemake_executor_plugin_fedgen.sites import load_registry

from snakemake_fedgen.node.config import load_config
from snakemake_fedgen.node.redact import IdRedactor

SITES = ("A", "B", "C")
SEED = 7  # the seed of the ``tiny`` fixture


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_simulate__writes_the_contract_layout(tiny: Path):
    expected = [
        "reference/panel.vcf.gz",
        "reference/panel.vcf.gz.tbi",
        "reference/genetic_map.map",
        "reference/panel_populations.tsv",
        "sites.yaml",
        "truth.json",
    ]
    for s in SITES:
        expected += [f"sites/{s}/{f}" for f in ("genotypes.vcf.gz", "genotypes.vcf.gz.tbi")]
        expected += [f"sites/{s}/phenotypes.tsv", f"sites/{s}/node.yaml"]
    assert sorted(p for p in expected if not (tiny / p).is_file()) == []
    for s in SITES:
        assert (tiny / "sites" / s / "work").is_dir()
        assert (tiny / "sites" / s / "egress").is_dir()
    leftovers = [p.name for p in tiny.rglob(".*tmp")]
    assert leftovers == []


def test_simulate__registry_loads_and_points_at_the_files(tiny: Path):
    registry = load_registry(tiny / "sites.yaml")
    raw = yaml.safe_load((tiny / "sites.yaml").read_text())
    assert list(raw["sites"]) == list(SITES)
    for i, s in enumerate(SITES):
        entry = raw["sites"][s]
        port = 8101 + i
        assert entry["tes_url"] == f"http://127.0.0.1:{port}/ga4gh/tes/v1"
        assert entry["egress_read_url"] == f"http://127.0.0.1:{port}/fedgen/v1/egress"
        assert entry["token_env"] == f"FEDGEN_TOKEN_{s}"
        assert entry["work_url"] == (tiny / "sites" / s / "work").as_uri()
        assert entry["egress_allow"] == ["results/sumstats/**"]
        for name, ds in entry["datasets"].items():
            path = Path(ds["url"].removeprefix("file://"))
            assert path.is_absolute() and path.is_file(), (s, name)
        assert entry["datasets"]["genotypes"]["duo"]
    assert registry is not None


def test_simulate__base_port_moves_every_site(tmp_path: Path, simulate_cli):
    proc = simulate_cli(tmp_path / "sim", "--base-port", "9200")
    assert proc.returncode == 0, proc.stderr
    raw = yaml.safe_load((tmp_path / "sim" / "sites.yaml").read_text())
    ports = [raw["sites"][s]["tes_url"].split(":")[2].split("/")[0] for s in SITES]
    assert ports == ["9200", "9201", "9202"]


def test_simulate__node_configs_confine_each_site(tiny: Path, tmp_path: Path, truth: dict):
    for s in SITES:
        node = load_config(tmp_path / f"state-{s}", config_file=tiny / "sites" / s / "node.yaml")
        assert node.node_id == f"site-{s}"
        assert node.egress_root == tiny / "sites" / s / "egress"
        cfg = yaml.safe_load((tiny / "sites" / s / "node.yaml").read_text())
        site_dir = tiny / "sites" / s
        assert cfg["read_roots"] == [str(site_dir), str(tiny / "reference")]
        assert cfg["write_roots"] == [str(site_dir / "work"), str(site_dir / "egress")]
        assert cfg["egress_root"] == str(site_dir / "egress")
        assert cfg["airlock"] == {"min_n": 50, "min_mac": 10, "min_cell": 5}
        assert cfg["cpu_cores"] == 2
        # Every sample of the site (the VCF header) is redacted from task logs.
        assert node.redact_ids_from == [site_dir / "genotypes.vcf.gz"]
        # Checked against bcftools, not against the redactor's own reader.
        listed = subprocess.run(
            ["bcftools", "query", "-l", str(site_dir / "genotypes.vcf.gz")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(listed) == truth["sites"][s]["n_samples"]
        assert IdRedactor(node.redact_ids_from).ids() == set(listed)


def test_simulate__vcfs_are_valid_sorted_biallelic_snps(tiny: Path, truth: dict):
    for vcf, n_expected in [
        (tiny / "reference/panel.vcf.gz", truth["reference_panel"]["n_variants"]),
        *((tiny / f"sites/{s}/genotypes.vcf.gz", truth["sites"][s]["n_variants"]) for s in SITES),
    ]:
        stats = subprocess.run(
            ["bcftools", "stats", str(vcf)], check=True, capture_output=True, text=True
        ).stdout
        sn = {
            line.split("\t")[2]: int(line.split("\t")[3])
            for line in stats.splitlines()
            if line.startswith("SN\t")
        }
        assert sn["number of records:"] == n_expected
        assert sn["number of SNPs:"] == n_expected
        assert sn["number of multiallelic sites:"] == 0
        assert sn["number of indels:"] == 0
        query = subprocess.run(
            ["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\n", str(vcf)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")[:-1]
        rows = [line.split("\t") for line in query]
        assert {r[0] for r in rows} == {"20"}
        positions = [int(r[1]) for r in rows]
        assert positions == sorted(set(positions)), f"{vcf}: unsorted or duplicate positions"
        assert all(r[2] in "ACGT" and r[3] in "ACGT" and r[2] != r[3] for r in rows)
        assert len({r[2] + r[3] for r in rows}) == 12  # every REF/ALT combination occurs


def test_simulate__panel_is_phased_and_sites_unphased_with_missing_calls(tiny: Path):
    with gzip.open(tiny / "reference/panel.vcf.gz", "rt") as fh:
        first = next(line for line in fh if not line.startswith("#")).rstrip("\n").split("\t")
    assert all(g in ("0|0", "0|1", "1|0", "1|1") for g in first[9:])
    with gzip.open(tiny / "sites/A/genotypes.vcf.gz", "rt") as fh:
        calls = [
            g for line in fh if not line.startswith("#") for g in line.rstrip("\n").split("\t")[9:]
        ]
    assert set(calls) == {"0/0", "0/1", "1/1", "./."}
    missing = calls.count("./.") / len(calls)
    assert 0.008 < missing < 0.03  # ~1% everywhere plus the injected low-call samples/variants


def test_simulate__samples_are_disjoint_across_panel_and_sites(tiny: Path):
    def samples(vcf: Path) -> list[str]:
        out = subprocess.run(
            ["bcftools", "query", "-l", str(vcf)], capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    groups = [samples(tiny / "reference/panel.vcf.gz")]
    groups += [samples(tiny / f"sites/{s}/genotypes.vcf.gz") for s in SITES]
    flat = [x for g in groups for x in g]
    assert all(groups), "bcftools listed no samples"
    assert len(flat) == len(set(flat))


def test_simulate__genetic_map_is_a_plink_map_beagle_accepts(tiny: Path):
    rows = [
        line.split("\t") for line in (tiny / "reference/genetic_map.map").read_text().splitlines()
    ]
    assert all(len(r) == 4 and r[0] == "20" and r[1] == "." for r in rows)
    bp = [int(r[3]) for r in rows]
    cm = [float(r[2]) for r in rows]
    assert bp == sorted(set(bp))
    assert all(b >= a for a, b in itertools.pairwise(cm))
    # About 1.2 cM/Mb over the chromosome, as on the real chr20.
    assert 0.8 < (cm[-1] - cm[0]) / ((bp[-1] - bp[0]) / 1e6) < 1.6


def test_simulate__same_seed_gives_identical_bytes(tiny: Path, tmp_path: Path, simulate_cli):
    again = tmp_path / "again"
    assert simulate_cli(again, seed=SEED).returncode == 0
    first, second = _files(tiny), _files(again)
    assert sorted(first) == sorted(second)
    for name, data in first.items():
        other = second[name]
        if name.endswith(".yaml"):  # absolute paths differ by construction
            other = other.replace(str(again).encode(), str(tiny).encode())
        assert data == other, f"{name} differs between two runs with seed {SEED}"
    different = tmp_path / "other"
    assert simulate_cli(different, seed=SEED + 1).returncode == 0
    assert (different / "sites/A/genotypes.vcf.gz").read_bytes() != first[
        "sites/A/genotypes.vcf.gz"
    ]


def test_simulate__refuses_a_foreign_non_empty_directory(tmp_path: Path, simulate_cli):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    proc = simulate_cli(out)
    assert proc.returncode == 1
    assert "is not empty" in proc.stderr and str(out) in proc.stderr
    assert proc.stderr.count("\n") == 1  # one clear message, no traceback
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_simulate__bad_arguments_give_one_clear_message(tmp_path: Path, simulate_cli):
    proc = simulate_cli(tmp_path / "a", "--base-port", "70000")
    assert proc.returncode == 1
    assert "--base-port must be in 1..65533; got 70000" in proc.stderr
    proc = simulate_cli(tmp_path / "b", seed=-3)
    assert proc.returncode == 1
    assert "seed must be a non-negative integer; got seed=-3" in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "truth.json").exists()
