"""The panel and genetic map work with Beagle 5.4: the hidden causal variant is imputed well."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats


@pytest.mark.slow
@pytest.mark.parametrize("federation", ["tiny", "tiny3"])
def test_simulate__beagle_imputes_the_causal_variant_at_site_a(federation, tmp_path, request):
    """One chromosome, and three in one multi-contig panel, VCF and map (Beagle reads all)."""
    tiny: Path = request.getfixturevalue(federation)
    truth = json.loads((tiny / "truth.json").read_text())
    subprocess.run(
        [
            "beagle",
            f"gt={tiny / 'sites/A/genotypes.vcf.gz'}",
            f"ref={tiny / 'reference/panel.vcf.gz'}",
            f"map={tiny / 'reference/genetic_map.map'}",
            f"out={tmp_path / 'imputed'}",
            "nthreads=2",
        ],
        check=True,
        capture_output=True,
    )
    strong = max(truth["causal_variants"], key=lambda c: c["variance_explained"])
    with gzip.open(tmp_path / "imputed.vcf.gz", "rt") as fh:
        header = next(line for line in fh if line.startswith("#CHROM")).rstrip("\n").split("\t")
        record = next(
            line.rstrip("\n").split("\t")
            for line in fh
            if line.split("\t", 2)[:2] == [strong["chrom"], str(strong["pos"])]
        )
    assert (record[3], record[4]) == (strong["ref"], strong["alt"])
    info = dict(kv.split("=") for kv in record[7].split(";") if "=" in kv)
    assert "IMP" in record[7].split(";")  # imputed, not genotyped
    assert float(info["DR2"]) > 0.8
    fmt = record[8].split(":")
    ds = np.array([float(x.split(":")[fmt.index("DS")]) for x in record[9:]])
    ph = pd.read_csv(tiny / "sites/A/phenotypes.tsv", sep="\t", na_values="NA")
    assert list(ph["IID"]) == header[9:]
    ok = ph["qt"].notna().to_numpy()
    fit = stats.linregress(ds[ok], ph["qt"].to_numpy()[ok])
    assert fit.pvalue < 1e-4
    assert np.sign(fit.slope) == np.sign(strong["beta"])
