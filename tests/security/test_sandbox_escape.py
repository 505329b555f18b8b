"""Sandbox and host paths: a hostile workflow author against a real node.

Every attack plants a symlink (or swaps a directory) inside its own task directory and then
waits for the node, running as root on the host, to use that path: stdio redirection, log
tails, bubblewrap mount points, outputs, egress and scratch removal. The node must never follow
such a path out of the task, tasks must never run as root, and the state directory, token file,
audit log and the node's code must stay out of a task's reach in bwrap and in host runtime with
a task user.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.errors import FedgenError

import snakemake_fedgen
from tests.security.conftest import (
    executor,
    logs_text,
    needs_bwrap,
    stdouts,
    system_log,
    task,
)

SUMSTATS = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\n"
    "20\t1000\tA\tG\t0.1\t0.05\t0.3\t0.04\t500\n"
)
PACKAGE_DIR = Path(snakemake_fedgen.__file__).resolve().parent


def _no_secret_in(site, doc) -> None:
    text = logs_text(doc)
    for name, token in site.tokens.items():
        assert token not in text, f"{name}'s bearer token reached the caller"
    assert site.token_file.read_text().strip(), "token file intact"


# -- stdio redirection -----------------------------------------------------------------------


@needs_bwrap
def test_stdin_symlink_to_token_file__token_never_reaches_the_caller(bwrap_site):
    site = bwrap_site
    doc = site.alice.run(
        task(
            executor(f"ln -s {site.token_file} in.txt"),
            executor("cat", stdin="/fedgen/work/in.txt"),
        )
    )
    _no_secret_in(site, doc)
    assert doc["state"] == "SYSTEM_ERROR", doc["state"]
    assert "stdin" in system_log(doc) and "symlink" in system_log(doc)


@needs_bwrap
def test_stdin_symlink_to_task_database__other_callers_tasks_never_leak(bwrap_site):
    site = bwrap_site
    secret = "bob-secret-5e1f0c"
    bob_task = site.bob.create(task(executor("sleep 20"), tags={"note": secret}))
    db = site.state / "tasks.sqlite"
    doc = site.alice.run(
        task(
            executor(f"ln -s {db} db && ln -s {db}-wal wal"),
            executor("grep -a -o 'bob-secret-[0-9a-f]*' || true", stdin="/fedgen/work/db"),
            executor("grep -a -o 'bob-secret-[0-9a-f]*' || true", stdin="/fedgen/work/wal"),
        )
    )
    assert secret not in logs_text(doc)
    assert doc["state"] == "SYSTEM_ERROR"
    # The database itself is untouched and still serves bob.
    assert site.bob.get(bob_task).json()["tags"] == {"note": secret, "fedgen_code": "unapproved"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2


@needs_bwrap
def test_stdout_symlink_to_audit_log__audit_neither_truncated_nor_forged(bwrap_site):
    site = bwrap_site
    before = site.audit_lines()
    forged = '{"caller":"bob","action":"CreateTask","outcome":"forged-by-alice"}'
    doc = site.alice.run(
        task(
            executor(f"ln -s {site.state / 'audit.jsonl'} out.txt"),
            executor(f"echo '{forged}'", stdout="/fedgen/work/out.txt"),
        )
    )
    after = site.audit_lines()
    assert after[: len(before)] == before, "the audit log was truncated or rewritten"
    assert "forged-by-alice" not in "\n".join(after)
    # The symlink was replaced by the executor's own stdout file, inside the task.
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert stdouts(doc)[1] == forged + "\n"


@needs_bwrap
def test_stderr_symlink_to_host_file__host_file_not_written(bwrap_site):
    site = bwrap_site
    victim = site.base / "victim.txt"
    victim.write_text("original\n")
    victim.chmod(0o600)
    doc = site.alice.run(
        task(
            executor(f"ln -s {victim} err.txt"),
            executor("echo pwned >&2", stderr="/fedgen/work/err.txt"),
        )
    )
    assert victim.read_text() == "original\n"
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert doc["logs"][-1]["logs"][1]["stderr"] == "pwned\n"


@needs_bwrap
def test_stdout_path_swapped_for_symlink_while_running__log_tail_not_read_through_it(bwrap_site):
    site = bwrap_site
    doc = site.alice.run(
        task(
            executor(
                f"rm -f o.txt && ln -s {site.token_file} o.txt && echo done",
                stdout="/fedgen/work/o.txt",
            )
        )
    )
    _no_secret_in(site, doc)
    assert stdouts(doc) == ["done\n"]


@needs_bwrap
def test_stdio_inside_the_task_still_works(bwrap_site):
    site = bwrap_site
    doc = site.alice.run(
        task(
            executor("printf 'b\\na\\n' > in.txt"),
            executor("sort", stdin="/fedgen/work/in.txt", stdout="/fedgen/work/logs/sorted.txt"),
            executor("cat logs/sorted.txt; echo warn >&2", stderr="/fedgen/work/logs/err.txt"),
            executor("cat logs/err.txt"),
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert stdouts(doc) == ["", "a\nb\n", "a\nb\n", "warn\n"]


# -- bubblewrap mount points -----------------------------------------------------------------


@needs_bwrap
def test_input_mount_point_parent_swapped_for_symlink__nothing_created_on_host(bwrap_site):
    site = bwrap_site
    (site.data / "in.txt").write_text("input\n")
    victim = site.base / "victim-dir"
    victim.mkdir()
    doc = site.alice.run(
        task(
            executor(f"mv /fedgen/work/d /fedgen/work/d0 && ln -s {victim} /fedgen/work/d"),
            executor("cat d/in.txt"),
            inputs=[{"path": "/fedgen/work/d/in.txt", "url": (site.data / "in.txt").as_uri()}],
        )
    )
    assert list(victim.iterdir()) == [], "bwrap created its mount point on the host"
    assert doc["state"] in ("SYSTEM_ERROR", "EXECUTOR_ERROR")
    assert "input" not in "".join(stdouts(doc))


# -- who the task is and what it can reach -----------------------------------------------------


PROBE = (
    "id -u; id -g; "
    "cat {token} >/dev/null 2>&1 && echo TOKEN-READ || echo no-token; "
    "ls {state} >/dev/null 2>&1 && echo STATE-LISTED || echo no-state; "
    "cat {state}/audit.jsonl >/dev/null 2>&1 && echo AUDIT-READ || echo no-audit; "
    "cat {state}/tasks.sqlite >/dev/null 2>&1 && echo DB-READ || echo no-db; "
    "cat {state}/node.yaml >/dev/null 2>&1 && echo CONFIG-READ || echo no-config; "
    "(echo forged >> {state}/audit.jsonl) 2>/dev/null && echo AUDIT-WRITTEN || echo no-audit-write; "
    "touch {code}/pwned.py 2>/dev/null && echo CODE-WRITTEN || echo no-code-write"
)
PROBE_OK = [
    "no-token",
    "no-state",
    "no-audit",
    "no-db",
    "no-config",
    "no-audit-write",
    "no-code-write",
]


def _probe(site) -> list[str]:
    command = PROBE.format(token=site.token_file, state=site.state, code=PACKAGE_DIR)
    doc = site.alice.run(task(executor(command)))
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert not (PACKAGE_DIR / "pwned.py").exists()
    assert "forged" not in "\n".join(site.audit_lines())
    return stdouts(doc)[0].split()


@needs_bwrap
def test_bwrap__task_runs_unprivileged_and_reaches_no_node_secret(bwrap_site):
    out = _probe(bwrap_site)
    assert out[:2] == ["65534", "65534"], f"task ran as uid/gid {out[:2]}"
    assert out[2:] == PROBE_OK


def test_host_runtime_as_root_without_task_user__node_refuses_to_start(make_site):
    if os.geteuid() != 0:
        pytest.skip("the refusal is about a node running as root")
    site = make_site()
    with pytest.raises(FedgenError) as err:
        site.start(runtime="host")
    assert "task_user" in str(err.value)


def test_host_runtime_with_task_user__task_runs_as_it_and_reaches_no_node_secret(make_site):
    if os.geteuid() != 0:
        pytest.skip("a task user needs a node running as root")
    site = make_site().start(runtime="host", task_user="nobody")
    out = _probe(site)
    assert out[:2] == ["65534", "65534"], f"task ran as uid/gid {out[:2]}"
    assert out[2:] == PROBE_OK


def test_host_runtime_with_task_user__stdio_symlinks_are_refused(make_site):
    if os.geteuid() != 0:
        pytest.skip("a task user needs a node running as root")
    site = make_site().start(runtime="host", task_user="nobody")
    before = site.audit_lines()
    doc = site.alice.run(
        task(
            executor(f"ln -s {site.token_file} in.txt && ln -s {site.state}/audit.jsonl out.txt"),
            executor("cat", stdin="/fedgen/work/in.txt"),
        )
    )
    _no_secret_in(site, doc)
    assert doc["state"] == "SYSTEM_ERROR"
    doc = site.alice.run(
        task(
            executor(f"ln -s {site.state}/audit.jsonl out.txt"),
            executor("echo forged", stdout="/fedgen/work/out.txt"),
            executor("cat out.txt"),
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert stdouts(doc)[-1] == "forged\n", "the task's own stdout file holds its output"
    assert site.audit_lines()[: len(before)] == before
    assert "forged" not in "\n".join(site.audit_lines())


def test_host_runtime_with_task_user__workdir_symlink_does_not_move_the_task(make_site):
    if os.geteuid() != 0:
        pytest.skip("a task user needs a node running as root")
    site = make_site().start(runtime="host", task_user="nobody")
    doc = site.alice.run(
        task(
            executor(f"rmdir ../w2 && ln -s {site.state} ../w2"),
            executor("ls; pwd", workdir="/fedgen/w2"),
            volumes=["/fedgen/w2"],
        )
    )
    text = logs_text(doc)
    assert "tasks.sqlite" not in text and "audit.jsonl" not in text
    assert doc["state"] != "COMPLETE"


# -- outputs and egress ----------------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize(
    "plant, output",
    [
        # A file output that is a symlink to the token file.
        ("ln -s {token} result.txt", {"path": "/fedgen/work/result.txt"}),
        # A directory on the output path that leads into the state directory.
        ("rmdir d && ln -s {state} d", {"path": "/fedgen/work/d/tasks.sqlite"}),
        # A DIRECTORY output holding a symlink to the audit log.
        (
            "mkdir res && ln -s {state}/audit.jsonl res/audit.txt",
            {"path": "/fedgen/work/res", "type": "DIRECTORY"},
        ),
        # A wildcard output matched through a symlinked directory.
        (
            "rmdir g && ln -s {state} g",
            {"path": "/fedgen/work/g/*.sqlite", "path_prefix": "/fedgen/work/g"},
        ),
    ],
    ids=["file", "parent-dir", "inside-directory", "wildcard"],
)
def test_output_symlinks_out_of_the_task__refused_and_nothing_published(bwrap_site, plant, output):
    site = bwrap_site
    command = plant.format(token=site.token_file, state=site.state)
    out = dict(output, url=(site.work / "stolen").as_uri())
    doc = site.alice.run(task(executor(command), outputs=[out]))
    assert doc["state"] == "SYSTEM_ERROR", doc["state"]
    assert not any(p.is_file() for p in site.work.rglob("*")), "something was published"
    _no_secret_in(site, doc)


@needs_bwrap
def test_egress_output_symlink_to_another_callers_published_file__refused(bwrap_site):
    site = bwrap_site
    published = site.bob.run(
        task(
            executor(f"printf '{SUMSTATS}' > gwas.tsv"),
            outputs=[
                {"path": "/fedgen/work/gwas.tsv", "url": (site.egress / "B" / "gwas.tsv").as_uri()}
            ],
        )
    )
    assert published["state"] == "COMPLETE", system_log(published)
    bobs = [p for p in site.egress.rglob("gwas.tsv") if p.is_file()]
    assert len(bobs) == 1
    doc = site.alice.run(
        task(
            executor(f"ln -s {bobs[0]} mine.tsv"),
            outputs=[
                {"path": "/fedgen/work/mine.tsv", "url": (site.egress / "A" / "mine.tsv").as_uri()}
            ],
        )
    )
    assert doc["state"] == "SYSTEM_ERROR"
    assert [p for p in site.egress.rglob("*.tsv") if p.is_file()] == bobs
    assert site.alice.egress(site.node.egress_read_url, "A/mine.tsv").status_code == 404


@needs_bwrap
def test_output_hard_to_fake__regular_output_published_with_its_bytes(bwrap_site):
    """The refusals above do not refuse ordinary outputs (files, directories, wildcards)."""
    site = bwrap_site
    doc = site.alice.run(
        task(
            executor("echo one > a.txt && mkdir -p d/e && echo two > d/e/b.txt && echo 3 > c.csv"),
            outputs=[
                {"path": "/fedgen/work/a.txt", "url": (site.work / "a.txt").as_uri()},
                {"path": "/fedgen/work/d", "url": (site.work / "d").as_uri(), "type": "DIRECTORY"},
                {
                    "path": "/fedgen/work/*.csv",
                    "path_prefix": "/fedgen/work",
                    "url": (site.work / "csv").as_uri(),
                },
            ],
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    outputs = {o["path"]: o for o in doc["logs"][-1]["outputs"]}
    assert set(outputs) == {"/fedgen/work/a.txt", "/fedgen/work/d/e/b.txt", "/fedgen/work/c.csv"}
    contents = sorted(p.read_text() for p in site.work.rglob("*") if p.is_file())
    assert contents == ["3\n", "one\n", "two\n"]


# -- scratch removal -------------------------------------------------------------------------


@needs_bwrap
def test_scratch_removal_does_not_follow_planted_symlinks(bwrap_site):
    site = bwrap_site
    victim = site.base / "victim-dir"
    (victim / "sub").mkdir(parents=True)
    (victim / "keep.txt").write_text("keep\n")
    (victim / "sub" / "keep2.txt").write_text("keep\n")
    doc = site.alice.run(
        task(
            executor(
                f"ln -s {victim} /tmp/link && ln -s {victim}/keep.txt /tmp/file && "
                f"mkdir -p deep/er && ln -s {victim} deep/er/link && ln -s {victim}/sub sub"
            )
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert (victim / "keep.txt").read_text() == "keep\n"
    assert (victim / "sub" / "keep2.txt").read_text() == "keep\n"
    assert not (site.state / "tasks" / doc["id"]).exists()
