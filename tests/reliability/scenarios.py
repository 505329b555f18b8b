"""The documented reliability scenarios: what the user sees and what the tests verify.

``docs/reliability.md`` is rendered from :data:`SCENARIOS` (``python -m tests.reliability.report``)
and a test checks it matches. Every test that exercises a scenario calls :func:`observed` with the
real message it got, which asserts that the quoted fragment really is in that message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    """One row of the table: ``sees`` is a literal fragment of the message the user gets
    (alternatives separated by `` | ``, when timing decides which one appears)."""

    key: str
    area: str
    scenario: str
    sees: str
    verified: str


_ROWS = [
    # -- hostile tasks at a node (bwrap runtime) ---------------------------------------------
    Scenario(
        "genotypes_to_egress",
        "hostile task",
        "task copies the genotype VCF to an egress path",
        "airlock refused 1 egress file(s)",
        "SYSTEM_ERROR; file in quarantine, byte-identical; egress dir empty; Airlock+TaskEnded "
        "audit records; node then serves and completes a normal task",
    ),
    Scenario(
        "sample_ids_to_egress",
        "hostile task",
        "task writes a table with sample IDs to egress",
        "airlock refused 1 egress file(s)",
        "as above; the quarantined table still holds the IDs, none were published",
    ),
    Scenario(
        "network",
        "hostile task",
        "task opens a TCP connection to a loopback listener on the site host",
        "BLOCKED",
        "connect fails inside the sandbox; the listener accepted nothing",
    ),
    Scenario(
        "write_outside_root",
        "hostile task",
        "task writes to /etc, the site data dir, another task's dir, remounts a read-only "
        "bind writable",
        "Read-only file system",
        "every host file unchanged (content compared); remount refused because the sandbox "
        "drops all capabilities",
    ),
    Scenario(
        "symlink_output",
        "hostile task",
        "task output is a symlink to a host file (/etc/passwd)",
        "is a symlink; outputs must be regular files the task wrote",
        "SYSTEM_ERROR; nothing at the output or egress path",
    ),
    Scenario(
        "huge_output",
        "hostile task",
        "task writes a 12 GB output (sparse file)",
        "above the node's max_output_bytes",
        "SYSTEM_ERROR; nothing published; task dir removed",
    ),
    Scenario(
        "fork_bomb",
        "hostile task",
        "task forks up to 1,500 processes (capped by a counter for safety)",
        "exceeded max_task_seconds",
        "fork fails past the per-task pids cgroup limit (1,024); no process of the task survives "
        "the time limit, even one that called setsid",
    ),
    Scenario(
        "endless",
        "hostile task",
        "endless task (sleep) with a setsid child",
        "exceeded max_task_seconds",
        "SYSTEM_ERROR with the reason, also in the audit TaskEnded record; no leftover process",
    ),
    Scenario(
        "node_crash_cleanup",
        "hostile task",
        "the node is SIGKILLed while a task (with a setsid child) runs, then restarted",
        "node restarted while task was running",
        "task ends SYSTEM_ERROR (audit Recover record); none of its processes survive; its pids "
        "cgroup is removed at restart; the node serves again",
    ),
    # -- bad input ----------------------------------------------------------------------------
    Scenario(
        "bad_vcf",
        "bad input",
        "cut (bad BGZF), short-line and sample-less VCF as a site's genotypes, imported by the "
        "workflow's plink2 step at the site (tool output goes to the rule's log)",
        "--- last lines of logs/A/",
        "job error names the site, task, state and exit code, then the tail of the rule's log "
        '("Line N of --vcf file has fewer tokens" with the right N); no output at the '
        "coordinator",
    ),
    Scenario(
        "sumstats_export_corrupt",
        "bad input",
        "`fedgen sumstats export` of a plink2 --glm report with negative SE, a repeated "
        "variant, cut mid-file, header only, or missing",
        "fedgen sumstats: error:",
        "one line naming the report and the line; no table, sidecar or temp file left",
    ),
    Scenario(
        "sumstats_export_nan",
        "bad input",
        "`fedgen sumstats export` of a report with a NaN estimate",
        "withheld missing_estimate: 1",
        "row withheld and counted; no NaN in the exported table",
    ),
    Scenario(
        "meta_bad_study",
        "bad input",
        "`fedgen meta` over a study with NaN SE, negative SE, a duplicate variant, an empty "
        "file, or on another assembly",
        "fedgen meta: error:",
        "one line naming the file, line and column (or both sites' assemblies); no output",
    ),
    Scenario(
        "empty_site",
        "bad input",
        "a site's summary table holds a header only (`fedgen meta`); `fedgen sumstats export` "
        "of a report with no variant refuses to write one",
        "C_empty: read 0, kept 0",
        "meta runs on the other studies and lists the empty one with 0 rows read and kept in "
        "its summary and studies.tsv (a design choice of the meta engine, see its tests)",
    ),
    Scenario(
        "phenotype_ids",
        "bad input",
        "phenotype file whose IDs are not the genotypes' (`fedgen qc covariates`); partly "
        "missing or unknown IDs",
        "the phenotype file does not belong to these genotypes",
        "no match: one message naming both files, no covariate file; partial: those samples "
        "left out, the rest kept",
    ),
    Scenario(
        "registry_typo",
        "bad input",
        "sites.yaml with an unknown key (`tes_ulr`) or a bad URL (`htp:/...`), through "
        "`fedgen sites validate` and `snakemake --executor fedgen`",
        "did you mean 'tes_url'?",
        "file, line, site and key named; the run stops before any job",
    ),
    Scenario(
        "missing_token",
        "bad input",
        "token variable of a site not set",
        "environment variable FEDGEN_TOKEN_A (token_env) is not set",
        "the job fails naming site and variable; the token value is never printed",
    ),
    # -- faults between coordinator and sites (three-site workflow, 12 site tasks) -----------
    Scenario(
        "network_faults",
        "faults",
        "fault proxy before every node: 25% of requests dropped before/after the node answered, "
        "503 before/after, delayed 1 s or cut mid-body; at each site the answers to the first "
        "two task creations are lost after the node acted and the egress download is cut; "
        "site B refuses connections for 6 s",
        "17 of 17 steps (100%) done",
        "every fault kind injected; results byte-identical to a clean run (egress files, "
        "checksums of site-held files); each node holds exactly one COMPLETE task per job key; "
        "no token in the coordinator's files or the nodes' logs",
    ),
    Scenario(
        "gwas_faults",
        "faults",
        "the federated GWAS workflow (tiny simulation, 3 bwrap nodes) behind fault proxies: 10% "
        "random faults; at each site the first three task creations and two egress downloads "
        "fail",
        "steps (100%) done",
        "every result file (sumstats, QC counts, meta-analysis, plots) byte-identical to a "
        "clean run of the same code; exactly one COMPLETE task per job key at each node; "
        "downloads equal the sites' published files; causal locus is the top hit",
    ),
    Scenario(
        "node_sigkill",
        "crash",
        "site A's node is SIGKILLed while a task runs and restarted 3 s later (`--retries 1`)",
        "17 of 17 steps (100%) done",
        "interrupted task ends SYSTEM_ERROR 'node restarted while task was running' and is "
        "resubmitted; identical results; exactly one COMPLETE task per job key",
    ),
    Scenario(
        "coordinator_sigkill",
        "crash",
        "snakemake is SIGKILLed mid-run, then `--unlock` and a rerun with `--rerun-incomplete`",
        "reusing finished task | reattached to task",
        "identical results; exactly one task per job key at every node (none resubmitted)",
    ),
    # -- load -------------------------------------------------------------------------------------
    Scenario(
        "load",
        "load",
        "2,000 small tasks (each writes an output file) across 3 nodes, 500 then 1,500",
        "2000 of 2000 tasks COMPLETE",
        "every task listed exactly once (paged ListTasks) and COMPLETE, every output has its "
        "content; node RSS after 2,000 tasks <= 1.25 x RSS after 500 + 16 MiB",
    ),
]

SCENARIOS: dict[str, Scenario] = {row.key: row for row in _ROWS}


def observed(key: str, message: str) -> None:
    """Assert that the documented fragment of scenario ``key`` is in the real ``message``."""
    fragments = SCENARIOS[key].sees.split(" | ")
    assert any(f in message for f in fragments), (
        f"{key}: expected one of {fragments!r} in the message, got {message!r}"
    )
    # Optional record of what was really seen (e.g. for a report): FEDGEN_RELIABILITY_LOG.
    log = os.environ.get("FEDGEN_RELIABILITY_LOG")
    if log:
        hit = next(f for f in fragments if f in message)
        start = max(0, message.index(hit) - 200)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"scenario": key, "excerpt": message[start : start + 600]}) + "\n")


def render() -> str:
    """The text of docs/reliability.md."""
    lines = [
        "# Reliability and security: what was tested",
        "",
        "Generated from `tests/reliability/scenarios.py` by `python -m tests.reliability.report`;",
        "`tests/reliability/test_report.py` fails when this file and the scenarios differ, and",
        "each test asserts that the quoted message fragment is in the message it really got.",
        "Run the suite with `.venv/bin/pytest -q tests/reliability` (the slow ones included).",
        "",
        "| Area | Scenario | What the user sees | What was verified |",
        "| --- | --- | --- | --- |",
    ]
    for row in _ROWS:
        sees = " or ".join(f"`{f}`" for f in row.sees.split(" | "))
        lines.append(f"| {row.area} | {row.scenario} | {sees} | {row.verified} |")
    lines += [
        "",
        "## The node as a security boundary (`tests/security/`)",
        "",
        "Listed from the test files themselves (each an attack driven against a real node, or a",
        "hostile node against the real coordinator; written first and seen to fail). Which",
        "mechanism stops each one: [threat-model.md](threat-model.md).",
        "",
        "| Test file | Test | What it checks |",
        "| --- | --- | --- |",
    ]
    for path, name, doc in security_tests():
        lines.append(f"| `{path}` | `{name}` | {doc} |")
    return "\n".join(lines) + "\n"


def security_tests() -> list[tuple[str, str, str]]:
    """(file, test name, first docstring line or the name in words) of every security test."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "security"
    found = []
    for path in sorted(root.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                doc = ast.get_docstring(node)
                text = doc.strip().splitlines()[0] if doc else ""
                if not text:
                    text = node.name.removeprefix("test_").replace("__", ": ").replace("_", " ")
                found.append((f"tests/security/{path.name}", node.name, text.replace("|", "/")))
    return found
