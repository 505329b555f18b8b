"""Datasets and visas: a caller without a visa asks for a governed dataset under another name.

The site governs ``data/cohort/`` with a ControlledAccessGrants visa. Every spelling of the same
file, a symlink to it inside a read root, and a DIRECTORY input holding it must need the visa;
the check is made on the resolved path, not on the URL text.
"""

from __future__ import annotations

import httpx
import pytest

from snakemake_fedgen.node.areas import area_of
from snakemake_fedgen.node.auth import Caller
from tests.governance.issuer import AUDIENCE, ISSUER, Issuer
from tests.security.conftest import executor, needs_bwrap, stdouts, system_log, task

pytestmark = needs_bwrap

DATASET = "https://ega.test.invalid/datasets/EGAD0001"
GENOTYPES = "individual-level genotypes\n"


@pytest.fixture
def visa_site(make_site, tmp_path):
    issuer = Issuer()
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    site = make_site()
    cohort = site.data / "cohort"
    cohort.mkdir()
    (cohort / "geno.txt").write_text(GENOTYPES)
    public = site.data / "public"
    public.mkdir()
    (public / "ok.txt").write_text("public\n")
    (public / "link.txt").symlink_to(cohort / "geno.txt")
    mixed = site.data / "mixed"
    mixed.mkdir()
    (mixed / "ok.txt").write_text("public\n")
    (mixed / "also.txt").symlink_to("../cohort/geno.txt")
    # The tests read their tasks' stdout: the JWT callers' areas may have their logs.
    areas = [area_of(Caller(name, {"iss": ISSUER}, "jwt")) for name in ("alice", "bob", "mallory")]
    site.start(
        runtime="bwrap",
        caller_logs=areas,
        jwt={"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE},
        datasets_requiring_visa={cohort.as_uri() + "/": DATASET},
    )
    return site, issuer


def _spellings(site) -> dict[str, str]:
    path = str(site.data / "cohort" / "geno.txt")
    head, tail = path.rsplit("/cohort/", 1)
    return {
        "bare path": path,
        "localhost": f"file://localhost{path}",
        "leading //": f"file:///{path}",
        "inner //": f"file://{head}//cohort/{tail}",
        "/./": f"file://{head}/./cohort/{tail}",
        "percent-encoded": f"file://{head}/%63ohort/{tail}",
        "upper-case scheme": f"FILE://{path}",
        "no authority": f"file:{path}",
    }


def _post(site, token: str, inputs: list[dict]) -> httpx.Response:
    return httpx.post(
        f"{site.node.url}/tasks",
        json=task(executor("cat in.txt 2>/dev/null; ls in 2>/dev/null; true"), inputs=inputs),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _file(url: str) -> list[dict]:
    return [{"path": "/fedgen/work/in.txt", "url": url}]


def _directory(url: str) -> list[dict]:
    return [{"path": "/fedgen/work/in", "url": url, "type": "DIRECTORY"}]


def _cases(site) -> dict[str, list[dict]]:
    cases = {name: _file(url) for name, url in _spellings(site).items()}
    cases["symlink in a read root"] = _file((site.data / "public" / "link.txt").as_uri())
    cases["parent directory"] = _directory(site.data.as_uri())
    cases["parent directory, odd spelling"] = _directory(f"file://localhost{site.data}/./")
    cases["directory holding a symlink to it"] = _directory((site.data / "mixed").as_uri())
    return cases


def test_governed_dataset__every_spelling_needs_the_visa(visa_site):
    site, issuer = visa_site
    no_visa = issuer.token("mallory", visas=[issuer.visa("mallory", "EGAD-other")])
    leaked = {}
    for name, inputs in _cases(site).items():
        resp = _post(site, no_visa, inputs)
        if resp.status_code != 403:
            leaked[name] = resp.status_code
            continue
        assert "EGAD0001" in resp.json()["message"], (name, resp.json())
    assert leaked == {}, f"read without a visa (status): {leaked}"


def test_governed_dataset__with_the_visa_every_spelling_reads_it(visa_site):
    site, issuer = visa_site
    token = issuer.token("alice", visas=[issuer.visa("alice", DATASET)])
    headers = {"Authorization": f"Bearer {token}"}
    for name, inputs in _cases(site).items():
        resp = _post(site, token, inputs)
        assert resp.status_code == 200, (name, resp.text)
        task_id = resp.json()["id"]
        doc = httpx.get(
            f"{site.node.url}/tasks/{task_id}", params={"view": "FULL"}, headers=headers
        ).json()
        while doc["state"] in ("QUEUED", "INITIALIZING", "RUNNING"):
            doc = httpx.get(
                f"{site.node.url}/tasks/{task_id}", params={"view": "FULL"}, headers=headers
            ).json()
        assert doc["state"] == "COMPLETE", (name, system_log(doc))
        if inputs[0].get("type") != "DIRECTORY":
            assert stdouts(doc) == [GENOTYPES], name


def test_public_data__odd_spellings_need_no_visa(visa_site):
    site, issuer = visa_site
    token = issuer.token("bob", visas=[])
    ok = str(site.data / "public" / "ok.txt")
    for url in (ok, f"file://localhost{ok}", f"FILE://{ok}", f"file:{ok}"):
        assert _post(site, token, _file(url)).status_code == 200, url
