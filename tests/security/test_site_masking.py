"""Secure aggregation masked by the node (issue 14, item 2), against hostile tasks.

A real bwrap node for site A of a three-site study. Control runs at a node that lets tasks mask
(the old design) show the two attacks of the issue: a task's "masked" upload that the
coordinator unmasks alone, because the task took the peers' public keys from the coordinator's
registry; and plaintext dressed up as a masked upload. With the site's key in the node, the task
hands over plain aggregates, the node masks them with the peers' pinned keys, and the sum over
the three sites equals the plain sum (checked against the library's own unmasking).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.aggregates import read_variant_table, write_aggregates
from snakemake_fedgen.exact.solve import sum_aggregates
from tests.exact.conftest import site_aggregates
from tests.exact.exact_study import make_study, readable_by_task_user
from tests.security.conftest import Site, executor, needs_bwrap, system_log, task


def stderrs(doc: dict[str, Any]) -> list[str]:
    return [e.get("stderr", "") for e in (doc.get("logs") or [{}])[-1].get("logs", [])]


pytestmark = needs_bwrap

ROUND = "study-2026.1.qt"
OUT = "qt.aggregates.masked.tsv"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("masking-study")
    study = make_study(root, sizes=(120, 150, 100), m=80, seed=5)
    return study, site_aggregates(study), read_variant_table(study.root / "pooled.pvar")


@pytest.fixture(scope="module")
def keys():
    """The three sites' real key pairs, and the coordinator's own two."""
    private = {s: X25519PrivateKey.generate() for s in ("A", "B", "C", "B'", "C'")}
    return private, {s: secure.public_key_text(k) for s, k in private.items()}


def _site_files(site: Site, study: Any) -> None:
    st, aggs, _ = study
    write_aggregates(aggs[0], site.data / "A.aggregates.tsv")
    shutil.copy(st.root / "pooled.pvar", site.data / "variants.pvar")


def _upload_task(site: Site, command: str, *, request: bool, **extra: Any) -> dict[str, Any]:
    doc = task(
        executor(command),
        inputs=[
            {"url": (site.data / "A.aggregates.tsv").as_uri(), "path": "/fedgen/work/agg.tsv"},
            {"url": (site.data / "variants.pvar").as_uri(), "path": "/fedgen/work/variants.pvar"},
            *extra.pop("inputs", []),
        ],
        outputs=[{"path": f"/fedgen/work/{OUT}", "url": (site.egress / "A" / OUT).as_uri()}],
    )
    if request:
        doc["resources"] = {
            "backend_parameters": {
                "fedgen_mask_round": ROUND,
                "fedgen_mask_participants": "A,B,C",
                "fedgen_mask_variants": "variants.pvar",
            }
        }
    return doc


def _peer_uploads(study, private, public, names, tmp_path):
    """Uploads of B and C masked with the keys named (the real ones, or the coordinator's)."""
    _, aggs, universe = study
    out = []
    for agg, who in zip(aggs[1:], names, strict=True):
        up = secure.mask_aggregates(
            agg,
            private_key=private[who],
            public_keys={"A": public["A"], "B": public[names[0]], "C": public[names[1]]},
            participants=["A", "B", "C"],
            round_id=ROUND,
            universe=universe,
        )
        path = tmp_path / f"{agg.site}.masked.tsv"
        secure.write_masked(up, path)
        out.append(secure.read_masked(path))
    return out


def _assert_equal_sums(total, aggs) -> None:
    plain = sum_aggregates(aggs)
    assert total.n == plain.n
    for attr in ("yty", "cty", "ctc", "gtg", "gty", "ctg"):
        np.testing.assert_allclose(getattr(total, attr), getattr(plain, attr), atol=1e-9)


def test_task_masking__coordinator_keys_unmask_a_site_alone(make_site, study, keys, tmp_path):
    """The old design: the task masks with keys from the coordinator's registry."""
    private, public = keys
    site = make_site()
    _site_files(site, study)
    key = site.data / "A.key"
    key.write_text(
        "# test key\n" + __import__("base64").b64encode(private["A"].private_bytes_raw()).decode()
    )
    readable_by_task_user(key)
    registry = {
        "version": 1,
        "sites": {
            s: {
                "tes_url": "http://127.0.0.1:1/ga4gh/tes/v1",
                "work_url": "file:///site/work",
                "egress_url": "file:///site/work/egress",
                "egress_read_url": "http://127.0.0.1:1/fedgen/v1/egress",
                "public_key_x25519": public[k],
            }
            for s, k in (("A", "A"), ("B", "B'"), ("C", "C'"))
        },
    }
    (site.data / "sites.yaml").write_text(yaml.safe_dump(registry))
    site.start(runtime="bwrap", airlock={"secure_aggregation": True})
    command = (
        "fedgen exact mask --aggregates agg.tsv --key A.key --registry sites.yaml "
        f"--round {ROUND} --participants A,B,C --variants variants.pvar --ledger r.ledger "
        f"--out {OUT}"
    )
    extra = [
        {"url": key.as_uri(), "path": "/fedgen/work/A.key"},
        {"url": (site.data / "sites.yaml").as_uri(), "path": "/fedgen/work/sites.yaml"},
    ]
    done = site.alice.run(_upload_task(site, command, request=False, inputs=extra))
    assert done["state"] == "COMPLETE", stderrs(done)
    [published] = list(site.egress.rglob(OUT))
    # The coordinator holds the private halves of "B" and "C": with its own two uploads the
    # masks cancel, so it learns site A's aggregates on its own.
    fakes = _peer_uploads(study, private, public, ["B'", "C'"], tmp_path)
    _assert_equal_sums(secure.unmask_sum([secure.read_masked(published), *fakes]), study[1])


def test_plaintext_as_masked_upload__passes_only_where_tasks_mask(make_site, study, keys, tmp_path):
    private, public = keys
    # Any 32-hex-digit text passes the masked format: here site A's plain values, unmasked.
    _, aggs, universe = study
    zero = {s: X25519PrivateKey.generate() for s in "BC"}
    fake = secure.mask_aggregates(
        aggs[0],
        private_key=private["A"],
        public_keys={"A": public["A"], **{s: secure.public_key_text(k) for s, k in zero.items()}},
        participants=["A", "B", "C"],
        round_id=ROUND,
        universe=universe,
    )
    fake.once[:] = secure.encode(secure._flatten(aggs[0], universe)[0], 40)
    path = tmp_path / OUT
    secure.write_masked(fake, path)
    for masks, expected in ((False, "COMPLETE"), (True, "SYSTEM_ERROR")):
        site = make_site()
        _site_files(site, study)
        shutil.copy(path, site.data / "fake.tsv")
        extra: dict[str, Any] = {"airlock": {"secure_aggregation": True}}
        if masks:
            key = site.base / "keys" / "A.key"
            secure.generate_key(key)
            extra.update(
                secure_aggregation_key=str(key),
                secure_aggregation_peers={
                    "A": secure.public_key_text(secure.load_private_key(key)),
                    "B": public["B"],
                    "C": public["C"],
                },
            )
        site.start(runtime="bwrap", **extra)
        done = site.alice.run(
            _upload_task(
                site,
                f"cp fake.tsv {OUT}",
                request=False,
                inputs=[
                    {"url": (site.data / "fake.tsv").as_uri(), "path": "/fedgen/work/fake.tsv"}
                ],
            )
        )
        assert done["state"] == expected, system_log(done)
        if masks:
            assert "a masked upload made by the task" in system_log(done)
            assert list(site.egress.rglob(OUT)) == []


def test_node_masking__sum_with_the_real_peers_is_the_plain_sum(make_site, study, keys, tmp_path):
    private, public = keys
    site = make_site()
    _site_files(site, study)
    key = site.base / "keys" / "A.key"
    key.parent.mkdir()
    key.write_text(
        "# site A\n" + __import__("base64").b64encode(private["A"].private_bytes_raw()).decode()
    )
    peers = {s: public[s] for s in "ABC"}
    site.start(
        runtime="bwrap",
        secure_aggregation_key=str(key),
        secure_aggregation_peers=peers,
        airlock={"min_n": 50, "min_mac": 10},
    )
    info = __import__("httpx").get(f"{site.node.url}/service-info", timeout=10).json()
    assert "fedgen_mask_round" in info["tesResources_backend_parameters"]
    done = site.alice.run(_upload_task(site, f"cp agg.tsv {OUT}", request=True))
    assert done["state"] == "COMPLETE", system_log(done)
    [published] = list(site.egress.rglob(OUT))
    upload = secure.read_masked(published)
    assert upload.round_id == ROUND and upload.site == "A"
    # What left is masked: no plain value of site A is in it...
    plain_once = secure._flatten(study[1][0], study[2])[0]
    assert not np.array_equal(secure.decode(upload.once, 40), plain_once)
    # ...and with B's and C's uploads, masked with the real keys, the masks cancel.
    peers_up = _peer_uploads(study, private, public, ["B", "C"], tmp_path)
    _assert_equal_sums(secure.unmask_sum([upload, *peers_up]), study[1])
    [masked] = [r for r in site.audit() if r.get("action") == "Masked"]
    assert masked["round"] == ROUND and masked["outcome"] == "masked"
    # A participant the steward did not pin cannot be named by the task.
    doc = _upload_task(site, f"cp agg.tsv {OUT}", request=True)
    doc["resources"]["backend_parameters"]["fedgen_mask_participants"] = "A,B,X"
    done = site.alice.run(doc)
    assert done["state"] == "SYSTEM_ERROR"
    assert "no pinned public key for participant(s) X" in system_log(done)


def test_node_masking__keys_outside_the_config_are_refused(tmp_path: Path, keys):
    from snakemake_executor_plugin_fedgen.errors import ConfigError

    from snakemake_fedgen.exact.site_masking import SiteMasker

    _, public = keys
    key = tmp_path / "A.key"
    secure.generate_key(key)
    with pytest.raises(ConfigError, match="must list this site's own public key"):
        SiteMasker(key, {"B": public["B"], "C": public["C"]}, ledger=tmp_path / "l")
    with pytest.raises(ConfigError, match="site C: public_key_x25519 is not base64"):
        SiteMasker(key, {"B": public["B"], "C": "not-a-key"}, ledger=tmp_path / "l")


def test_node_masking__risk_round_sums(make_site, keys, tmp_path):
    """Risk-model round sums are masked by the node and add up to the plain total.

    Named sums need no variant list. The sum with B's and C's uploads is the plain total; the
    round cannot be reused with other values, nor other rounds' sums be sent in its place."""
    from snakemake_fedgen.exact.sums import SiteSums, add_sums, mask_sums, read_sums, write_sums

    private, public = keys
    site = make_site()
    key = site.base / "keys" / "A.key"
    key.parent.mkdir()
    key.write_text(
        "# site A\n" + __import__("base64").b64encode(private["A"].private_bytes_raw()).decode()
    )
    site.start(
        runtime="bwrap",
        secure_aggregation_key=str(key),
        secure_aggregation_peers={s: public[s] for s in "ABC"},
        airlock={"min_n": 50, "min_cell": 5},
    )
    rng = np.random.default_rng(3)
    names = ("n", "n_cases", "u:intercept", "u:age", "h:intercept:age")
    plain = {
        s: SiteSums(
            site=s,
            round_id="risk.run1.it1",
            kind="risk.terms",
            names=names,
            values=np.array([200 + i, 30, *rng.normal(size=3)]),
        )
        for i, s in enumerate("ABC")
    }
    write_sums(plain["A"], site.data / "A.sums.json")
    readable_by_task_user(site.data / "A.sums.json")
    out = "A.terms.sums.json"

    def round_task(command: str) -> dict[str, Any]:
        doc = task(
            executor(command),
            inputs=[{"url": (site.data / "A.sums.json").as_uri(), "path": "/fedgen/work/in.json"}],
            outputs=[{"path": f"/fedgen/work/{out}", "url": (site.egress / "A" / out).as_uri()}],
        )
        doc["resources"] = {
            "backend_parameters": {
                "fedgen_mask_round": "risk.run1.it1",
                "fedgen_mask_participants": "A,B,C",
            }
        }
        return doc

    done = site.alice.run(round_task(f"cp in.json {out}"))
    assert done["state"] == "COMPLETE", system_log(done)
    [published] = list(site.egress.rglob(out))
    upload = read_sums(published)
    assert upload.masked and upload.site == "A"
    peers = [
        mask_sums(plain[s], private_key=private[s], public_keys=public, participants="ABC")
        for s in "BC"
    ]
    total = add_sums([upload, *peers])
    np.testing.assert_allclose(total.values, sum(p.values for p in plain.values()), atol=1e-9)
    # The same round with other values: its difference with the first would be unmasked.
    other = plain["A"]
    other.values = other.values + 1.0
    write_sums(other, site.data / "A.sums.json")
    done = site.alice.run(round_task(f"cp in.json {out}"))
    assert done["state"] == "SYSTEM_ERROR"
    assert "already used by this site for different" in system_log(done)
    # Sums of another round than the one the task asked the node to mask: refused, not plain.
    other.round_id = "risk.run1.it9"
    write_sums(other, site.data / "A.sums.json")
    done = site.alice.run(round_task(f"cp in.json {out}"))
    assert done["state"] == "SYSTEM_ERROR"
    assert "nothing is published unmasked" in system_log(done)
