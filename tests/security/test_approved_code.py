"""Approved code (issue 14, item 1): a node that runs only what its steward approved.

The steward approves this repository's workflow with the real ``fedgen node approve``; a real
bwrap node with ``approved_code: required`` then takes tasks built the way the executor builds
them (:mod:`snakemake_executor_plugin_fedgen.approval`). Every hostile variant is refused at
CreateTask, with the rule and the first differing character, audited, and nothing runs. The
whole federated GWAS workflow runs against approving nodes in tests/workflow (demo federation).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Any

import httpx
import pytest
from snakemake_executor_plugin_fedgen import approval
from snakemake_executor_plugin_fedgen.staging import CHECKSUM_SCRIPT

from snakemake_fedgen.demo import SNAKEFILE
from tests.security.conftest import Site, needs_bwrap, system_log

pytestmark = needs_bwrap

WORKFLOW = SNAKEFILE.parent.parent
RULE = "exact_panel_variants"
PANEL = "##fileformat=VCFv4.2\n##contig=<ID=20>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
PANEL += "20\t100\trs1\tA\tG\t.\tPASS\t.\n20\t200\trs2\tC\tT\t.\tPASS\t.\n"


def _fedgen_node(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "node", *args, "--state-dir", str(site.state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _template(rule: str) -> str:
    from snakemake_fedgen.node.approvals import read_release

    [text] = {t.text for t in read_release(WORKFLOW).templates if t.rule == rule}
    return text


VALUES = {
    "output.variants": "sites/A/exact/panel_variants.tsv",
    "input.panel": "sites/A/datasets/reference_panel.vcf",
    "log": "logs/A/exact_panel_variants.log",
}


def _task(site: Site, *, values: dict[str, str] | None = None, **change: Any) -> dict[str, Any]:
    """The task the executor sends for exact_panel_variants at site A (optionally altered)."""
    values = dict(VALUES if values is None else values)
    template = change.pop("template", _template(RULE))
    logs = [VALUES["log"]]
    cmd = approval.render(template, values).strip()
    out = "sites/A/exact/panel_variants.tsv"
    executors = [
        {"image": "fedgen/tools:0.1", "command": ["mkdir", "-p", "--", "logs/A", "sites/A/exact"]},
        {"image": "fedgen/tools:0.1", "command": approval.rule_command(cmd, logs)},
        {
            "image": "fedgen/tools:0.1",
            "command": ["bash", "-c", CHECKSUM_SCRIPT, "fedgen-checksum", out, logs[0]],
        },
    ]
    for ex in executors:
        ex["workdir"] = "/fedgen/work"
    entry = {
        "kind": "rule",
        "rule": change.pop("rule", RULE),
        "template": change.pop("template_id", approval.template_id(template)),
        "values": values,
        "logs": logs,
    }
    doc = {
        "name": RULE,
        "inputs": [
            {
                "url": (site.data / "panel.vcf").as_uri(),
                "path": f"/fedgen/work/{VALUES['input.panel']}",
            }
        ],
        "outputs": [
            {"path": f"/fedgen/work/{out}", "url": (site.work / "A" / "variants.tsv").as_uri()}
        ],
        "executors": executors,
        "tags": {
            approval.APPROVAL_TAG: approval.approval_tag(
                [{"kind": "mkdir"}, entry, {"kind": "checksum"}]
            )
        },
    }
    for key, value in change.items():
        doc[key] = value
    return doc


@pytest.fixture
def approving(make_site) -> Site:
    site = make_site()
    (site.data / "panel.vcf").write_text(PANEL)
    shown = _fedgen_node(site, "approve", str(WORKFLOW))
    assert shown.returncode == 0, shown.stderr
    # The steward reads every template as shell before approving.
    assert f"rule {RULE}  (rules/exact.smk:" in shown.stdout
    assert "bcftools query -f" in shown.stdout and "not recorded" in shown.stdout
    done = _fedgen_node(site, "approve", str(WORKFLOW), "--yes", "--by", "steward-anna")
    assert done.returncode == 0 and "approved release" in done.stdout, done.stderr
    return site.start(runtime="bwrap", approved_code="required")


def _refused(site: Site, doc: dict[str, Any]) -> str:
    resp = site.alice.post(doc)
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert message.startswith("unapproved code: ")
    [record] = [r for r in site.audit() if r.get("action") == "CreateTask"][-1:]
    assert record["outcome"] == "400"
    return message


def test_approved_task__runs_and_its_egress_names_the_release(approving: Site):
    listing = _fedgen_node(approving, "approvals").stdout
    [digest] = [line.split()[0] for line in listing.splitlines() if "templates" in line]
    info = httpx.get(f"{approving.node.url}/service-info", timeout=10).json()
    assert info["fedgen"]["approved_code"] == "required"
    assert info["fedgen"]["approved_releases"] == [digest]
    done = approving.alice.run(_task(approving))
    assert done["state"] == "COMPLETE", system_log(done)
    assert done["tags"]["fedgen_code"] == f"approved:{digest}"
    [out] = list(approving.work.rglob("variants.tsv"))
    assert out.read_text().splitlines()[1:] == ["20\t100\trs1\tA\tG", "20\t200\trs2\tC\tT"]


@pytest.mark.parametrize(
    ("alter", "expected"),
    [
        # An extra option after the approved command.
        (
            lambda d: d["executors"][1]["command"].__setitem__(
                2, d["executors"][1]["command"][2] + " ; cat /etc/passwd"
            ),
            "rule exact_panel_variants: the command is not the approved template",
        ),
        # Shell syntax in a value.
        (
            {"values": {**VALUES, "input.panel": "x.vcf; curl evil"}},
            "field {input.panel} has 'x.vcf;'",
        ),
        # Option injection: a value that starts with '-'.
        ({"values": {**VALUES, "input.panel": "--threads 9"}}, "has '--threads'"),
        # Outside the task.
        ({"values": {**VALUES, "input.panel": "../../etc/passwd"}}, "has '../../etc/passwd'"),
        # A template the steward never approved.
        (
            {"template": "cat {input.panel} > {output.variants} 2> {log}"},
            "is not approved at this site for this rule",
        ),
        # An approved template presented as another rule's.
        ({"rule": "gwas_glm"}, "is not approved at this site for this rule"),
        # Environment (BASH_ENV runs a script before the command).
        (
            lambda d: d["executors"][1].__setitem__("env", {"BASH_ENV": "/fedgen/work/x.sh"}),
            "env, stdin, stdout and stderr are not part of approved commands",
        ),
        # A wrapper that is not the executor's own.
        (
            lambda d: d["executors"][0].__setitem__("command", ["sh", "-c", "id"]),
            "executors[0] (mkdir): not `mkdir -p -- DIR...`",
        ),
        # No approval facts at all.
        (lambda d: d.pop("tags"), "the task has no fedgen_approval tag"),
    ],
    ids=[
        "appended-command",
        "shell-syntax",
        "option-injection",
        "path-traversal",
        "unapproved-template",
        "other-rule",
        "env",
        "wrapper",
        "no-tag",
    ],
)
def test_hostile_task__refused_at_submission(approving: Site, alter, expected):
    if callable(alter):
        doc = _task(approving)
        alter(doc)
    else:
        doc = _task(approving, **alter)
    message = _refused(approving, doc)
    assert expected in message, message
    # Nothing ran: no task was created.
    assert approving.alice.get("x").status_code == 404
    assert not list(approving.work.rglob("variants.tsv"))


def test_refusal__names_the_first_differing_character(approving: Site):
    doc = _task(approving)
    script = doc["executors"][1]["command"][2]
    at = script.index("bcftools query")
    doc["executors"][1]["command"][2] = script[:at] + "bcftools view " + script[at + 15 :]
    message = _refused(approving, doc)
    assert f"first difference at character {at + 9}" in message
    assert "approved 'bcftools query" in message.replace("\\t", "\t") or "query" in message


def test_unapproved_mode__said_in_service_info_and_every_egress_record(make_site):
    site = make_site().start(runtime="bwrap")
    info = httpx.get(f"{site.node.url}/service-info", timeout=10).json()
    assert info["fedgen"]["approved_code"].startswith("off")
    out = site.egress / "A" / "n.tsv"
    body = "step\tquantity\tcount\nqc\tsamples\t17\n"
    done = site.alice.run(
        {
            "executors": [
                {
                    "image": "fedgen/tools:0.1",
                    "command": ["sh", "-c", f"printf {shlex.quote(body)} > n.tsv"],
                    "workdir": "/fedgen/work",
                }
            ],
            "outputs": [{"path": "/fedgen/work/n.tsv", "url": out.as_uri()}],
            # A caller cannot claim approval: the node sets the tag.
            "tags": {"fedgen_code": "approved:0000"},
        }
    )
    assert done["state"] == "COMPLETE", system_log(done)
    assert done["tags"]["fedgen_code"] == "unapproved"
    [record] = [r for r in site.audit() if r.get("action") == "Airlock"]
    assert record["code"] == "unapproved"


def test_render__equals_snakemakes_own_formatting():
    """The node's rendering against Snakemake's formatter on lists, quoting and escapes."""
    from snakemake.iocontainers import InputFiles, OutputFiles
    from snakemake.utils import format as snakemake_format

    template = (
        "tool {input} --a {input.x:q} --b {params.p} {{literal}} --c {threads} "
        "--d '{params.s}' > {output[0]} 2> {log}"
    )
    inputs = InputFiles(["d/x.vcf", "d/y.vcf"])
    inputs._set_name("x", 0)
    outputs = OutputFiles(["o/out.tsv"])

    class P:
        p = ["hide-covar", "cols=+a1freq"]
        s = "A B"

    namespace = {"input": inputs, "output": outputs, "params": P, "threads": 4, "log": "l.log"}
    want = snakemake_format(template, **namespace)
    values = {k: snakemake_format("{" + k + "}", **namespace) for k in approval.fields(template)}
    assert approval.render(template, values) == want
    assert values["input.x:q"] == "d/x.vcf" and values["params.p"] == "hide-covar cols=+a1freq"
    assert all(approval.unsafe_token(v) is None for v in values.values())
