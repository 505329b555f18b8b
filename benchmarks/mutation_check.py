"""Mutation check: known-bad patches that the test suite must catch.

Run: ``make mutate`` (or ``.venv/bin/python benchmarks/mutation_check.py [NAME ...]``). Not part
of ``make test``: it takes a few minutes.

Each mutation is a small bug of the kind that once passed a green suite (a privacy claim no
longer true while every test stays green). For each one the script copies the working tree to a
temporary directory, applies the patch there (one exact text replacement; the script fails if
the text is not found exactly once), checks that Python imports the copy's packages, runs the
tests that must catch it and prints whether they failed. Exit status 1 if any mutation survived
or could not be checked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "snakemake-executor-plugin-fedgen/snakemake_executor_plugin_fedgen"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


MUTATIONS = (
    Mutation(
        "secure-seed-without-shared-secret",
        "snakemake_fedgen/exact/secure.py",
        "    shared = private_key.exchange(_load_public_key(peer_public, peer))",
        "    shared = bytes(32)",
        ("tests/exact/test_exact_secrecy.py",),
        "mask seeds no longer depend on the X25519 shared secret (masks still cancel)",
    ),
    Mutation(
        "redactor-reads-first-id-file-only",
        "snakemake_fedgen/node/redact.py",
        "                for p in self.paths:\n                    found |= sample_ids(p)",
        "                for p in self.paths[:1]:\n                    found |= sample_ids(p)",
        (
            "tests/security/test_task_logs.py::"
            "test_redaction__ids_from_each_of_three_files_on_every_channel",
        ),
        "only the first redact_ids_from file is read",
    ),
    Mutation(
        "system-logs-not-redacted",
        "snakemake_fedgen/node/caller_view.py",
        '        redactor.redact(unquoted(line)) for line in attempt.get("system_logs") or []',
        '        line for line in attempt.get("system_logs") or []',
        (
            "tests/security/test_task_logs.py::"
            "test_redaction__ids_from_each_of_three_files_on_every_channel",
        ),
        "system_logs (airlock refusals quoting values) returned as stored",
    ),
    Mutation(
        "stdout-returned-by-default",
        "snakemake_fedgen/node/caller_view.py",
        '            {k: v for k, v in entry.items() if k not in ("stdout", "stderr")}',
        "            dict(entry)",
        ("tests/security/test_task_logs.py",),
        "a caller not under caller_logs gets its tasks' stdout/stderr",
    ),
    Mutation(
        "poll-fetches-every-task",
        f"{PLUGIN}/status.py",
        "                for missing in ids - states.keys():",
        "                for missing in ids:",
        ("tests/executor/test_federation.py",),
        "every status poll also GETs every task (one request per site per poll broken)",
    ),
    Mutation(
        "duo-always-permits",
        f"{PLUGIN}/duo.py",
        "    if not permitted:\n        conflicts.extend(permission_conflicts)",
        "    if False:\n        conflicts.extend(permission_conflicts)",
        ("tests/governance/test_duo.py",),
        "a consent that does not permit the purpose is accepted",
    ),
    Mutation(
        "disk-quota-not-enforced",
        "snakemake_fedgen/node/scheduler.py",
        "        if used <= quota and largest < quota:",
        "        if True:",
        (
            "tests/security/test_resource_limits.py::test_scratch_over_disk_quota__task_killed_and_scratch_removed",
        ),
        "the scratch-disk watchdog never stops a task",
    ),
    Mutation(
        "origin-header-accepted",
        "snakemake_fedgen/node/guard.py",
        '    if "origin" in headers:',
        "    if False:",
        ("tests/security/test_network_clients.py",),
        "requests from web pages (Origin) are served",
    ),
    Mutation(
        "repeated-page-token-followed",
        f"{PLUGIN}/tes/client.py",
        "            if token in seen:",
        "            if False:",
        ("tests/security/test_hostile_node.py",),
        "a node repeating its page token is followed until the page limit",
    ),
    Mutation(
        "unhashed-egress-kept",
        f"{PLUGIN}/staging.py",
        "            if header_sha is None and published is None and checksum is None:",
        "            if False:",
        ("tests/security/test_hostile_node.py",),
        "an egress file without any sha256 is kept",
    ),
)


def _copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and new files, modifications included)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{copy}:{copy / 'snakemake-executor-plugin-fedgen'}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _imports_copy(copy: Path) -> bool:
    """Whether Python started in ``copy`` imports both packages from it (not the install)."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import snakemake_fedgen, snakemake_executor_plugin_fedgen;"
            "print(snakemake_fedgen.__file__); print(snakemake_executor_plugin_fedgen.__file__)",
        ],
        cwd=copy,
        env=_env(copy),
        capture_output=True,
        text=True,
        check=False,
    )
    files = probe.stdout.split()
    return probe.returncode == 0 and len(files) == 2 and all(f.startswith(str(copy)) for f in files)


def check(m: Mutation | None, tests: tuple[str, ...] = ()) -> tuple[str, float]:
    """Apply ``m`` to a fresh copy and run its tests: caught, SURVIVED or an error.

    ``m`` None: the control run, ``tests`` on an unmutated copy ("SURVIVED" is the good result).
    """
    name = m.name if m is not None else "control"
    with tempfile.TemporaryDirectory(prefix=f"fedgen-mutant-{name}-") as tmp:
        copy = Path(tmp)
        os.chmod(copy, 0o755)  # tasks run as an unprivileged user must reach the copied code
        _copy_tree(copy)
        if m is not None:
            tests = m.tests
            path = copy / m.file
            text = path.read_text()
            if text.count(m.old) != 1:
                found = text.count(m.old)
                return f"error: the text to mutate occurs {found} times in {m.file}", 0.0
            path.write_text(text.replace(m.old, m.new))
        if not _imports_copy(copy):
            return "error: Python does not import the mutated copy", 0.0
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=copy,
            env=_env(copy),
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.monotonic() - t0
        if proc.returncode == 1:
            return "caught", took
        if proc.returncode == 0:
            return "SURVIVED", took
        return f"error: pytest exit {proc.returncode}: {proc.stdout[-300:]}", took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to check (default: all)")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    # Control: the same tests pass on an unmutated copy, so "caught" below means the mutation.
    control = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    result, took = check(None, control)
    if result != "SURVIVED":
        print(f"control run on an unmutated copy failed ({result}); nothing to compare")
        return 1
    print(f"control: the {len(control)} test selections pass unmutated ({took:.1f} s)")
    print(f"{'mutation':<36} {'result':<10} {'s':>6}  tests")
    bad = 0
    for m in chosen:
        result, took = check(m)
        bad += result != "caught"
        print(f"{m.name:<36} {result:<10} {took:6.1f}  {' '.join(m.tests)}", flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} mutations caught")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
