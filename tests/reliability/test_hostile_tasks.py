"""Hostile or wrong tasks at a real bwrap node: each is blocked, the node keeps serving, and
the audit log records it."""

from __future__ import annotations

import hashlib
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from snakemake_fedgen.node.runtime import TASK_MAX_PIDS, pids_cgroup_root
from tests.reliability.conftest import (
    CALLER,
    HostileSite,
    output,
    shell_task,
    stdout_stderr,
    system_log,
    task_input,
)
from tests.reliability.scenarios import observed

pytestmark = pytest.mark.needs_bwrap

VCF = """##fileformat=VCFv4.2
##contig=<ID=20,length=64444167>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tPATIENT_0001\tPATIENT_0002
20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0|1\t1|1
20\t200\trs2\tC\tT\t.\tPASS\t.\tGT\t0|0\t0|1
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _genotypes(site: HostileSite) -> Path:
    """A real bgzipped VCF written by bcftools at the site's data dir."""
    path = site.data / "genotypes.vcf.gz"
    if not path.exists():
        text = site.data / "genotypes.vcf"
        text.write_text(VCF)
        subprocess.run(["bcftools", "view", "-Oz", "-o", str(path), str(text)], check=True)
    return path


def _refused_by_airlock(site: HostileSite, doc: dict, name: str) -> str:
    assert doc["state"] == "SYSTEM_ERROR", doc["state"]
    message = system_log(doc)
    assert list(site.egress.rglob("*")) == [], "nothing may be published"
    quarantine = site.node.state_dir / "quarantine" / f"static-{CALLER}" / doc["id"]
    quarantined = quarantine / "fedgen" / "work" / name
    assert quarantined.is_file(), "the refused file is kept at the site"
    records = site.audit(doc["id"])
    airlock = [r for r in records if r["action"] == "Airlock"]
    assert [(r["outcome"], r["file"]) for r in airlock] == [("refused", f"/fedgen/work/{name}")]
    ended = [r for r in records if r["action"] == "TaskEnded"]
    assert ended[0]["outcome"] == "SYSTEM_ERROR" and "airlock refused" in ended[0]["reason"]
    return message


def test_airlock__genotype_vcf_copied_to_egress_is_quarantined(hostile_site):
    site = hostile_site
    vcf = _genotypes(site)
    doc = site.run(
        shell_task(
            "cp in.vcf.gz leak.tsv.gz",
            inputs=[task_input("in.vcf.gz", vcf)],
            outputs=[output("leak.tsv.gz", site.egress / "A" / "leak.tsv.gz")],
        )
    )
    message = _refused_by_airlock(site, doc, "leak.tsv.gz")
    observed("genotypes_to_egress", message)
    quarantine = site.node.state_dir / "quarantine" / f"static-{CALLER}" / doc["id"]
    quarantined = quarantine / "fedgen/work/leak.tsv.gz"
    assert _sha(quarantined) == _sha(vcf)
    site.still_serves()


def test_airlock__sample_id_table_to_egress_is_quarantined(hostile_site):
    site = hostile_site
    doc = site.run(
        shell_task(
            "printf 'IID\\tqt\\nPATIENT_0001\\t1.5\\nPATIENT_0002\\t2.5\\n' > ids.tsv",
            outputs=[output("ids.tsv", site.egress / "A" / "ids.tsv")],
        )
    )
    message = _refused_by_airlock(site, doc, "ids.tsv")
    observed("sample_ids_to_egress", message)
    quarantine = site.node.state_dir / "quarantine" / f"static-{CALLER}" / doc["id"]
    quarantined = quarantine / "fedgen/work/ids.tsv"
    assert "PATIENT_0001" in quarantined.read_text()
    site.still_serves()


def test_bwrap__network_connection_to_host_listener_fails(hostile_site):
    site = hostile_site
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('BLOCKED', exc)\n"
        )
        task = shell_task("true")
        task["executors"][0]["command"] = ["python3", "-c", probe]
        doc = site.run(task)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    out, _ = stdout_stderr(doc)
    assert doc["state"] == "COMPLETE" and out.startswith("BLOCKED"), out
    observed("network", out)
    ended = [r["outcome"] for r in site.audit(doc["id"]) if r["action"] == "TaskEnded"]
    assert ended == ["COMPLETE"]
    site.still_serves()


def test_bwrap__writes_outside_the_task_root_fail(hostile_site):
    site = hostile_site
    vcf = _genotypes(site)
    before = _sha(vcf)
    hostname = Path("/etc/hostname").read_bytes()
    # A running task whose directory the hostile task then tries to write into.
    other = site.post(shell_task("sleep 4"))
    other_root = site.node.state_dir / "tasks" / other / "root" / "fedgen" / "work"
    deadline = time.monotonic() + 30
    while not other_root.is_dir():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    targets = [
        "/etc/hostname",
        "/etc/fedgen-probe",
        "/usr/fedgen-probe",
        "in.vcf.gz",  # the genotype input, bound read-only
        str(site.data / "genotypes.vcf.gz"),
        str(other_root / "planted.txt"),
    ]
    script = " ; ".join(f"echo pwned >> {t} || echo FAILED-{i}" for i, t in enumerate(targets))
    script += (
        " ; mount -o remount,rw,bind /etc || echo FAILED-remount-etc"
        " ; mount -o remount,rw,bind /fedgen/work/in.vcf.gz || echo FAILED-remount-input"
        " ; echo pwned >> in.vcf.gz || echo FAILED-after-remount"
        f" ; mkdir -p {site.data} && echo pwned > {site.data}/genotypes.vcf.gz"
    )
    doc = site.run(shell_task(script, inputs=[task_input("in.vcf.gz", vcf)]))
    out, err = stdout_stderr(doc)
    for i in range(len(targets)):
        assert f"FAILED-{i}" in out, (i, out, err)
    for tag in ("remount-etc", "remount-input", "after-remount"):
        assert f"FAILED-{tag}" in out, (tag, out, err)
    observed("write_outside_root", err)
    assert _sha(vcf) == before
    assert Path("/etc/hostname").read_bytes() == hostname
    assert not Path("/etc/fedgen-probe").exists() and not Path("/usr/fedgen-probe").exists()
    assert site.wait(other)["state"] == "COMPLETE"
    assert not (site.work / "planted.txt").exists()
    site.still_serves()


def test_storage__symlink_output_to_host_file_is_refused(hostile_site):
    site = hostile_site
    doc = site.run(
        shell_task(
            "ln -s /etc/passwd out.tsv",
            outputs=[
                output("out.tsv", site.egress / "A" / "passwd.tsv"),
            ],
        )
    )
    assert doc["state"] == "SYSTEM_ERROR"
    observed("symlink_output", system_log(doc))
    assert list(site.egress.rglob("*")) == []
    ended = [r for r in site.audit(doc["id"]) if r["action"] == "TaskEnded"]
    assert "symlink" in ended[0]["reason"]
    site.still_serves()


def test_storage__many_gigabyte_output_is_refused(hostile_site):
    site = hostile_site
    # Sparse: 12 GB apparent size (over the default 10 GiB cap) without using disk.
    doc = site.run(
        shell_task("truncate -s 12G big.bin", outputs=[output("big.bin", site.work / "big.bin")])
    )
    assert doc["state"] == "SYSTEM_ERROR"
    observed("huge_output", system_log(doc))
    assert not (site.work / "big.bin").exists()
    # The final state is published only after the task's scratch directory is gone.
    assert not (site.node.state_dir / "tasks" / doc["id"]).exists()
    ended = [r for r in site.audit(doc["id"]) if r["action"] == "TaskEnded"]
    assert "max_output_bytes" in ended[0]["reason"]
    site.still_serves()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(pids_cgroup_root() is None, reason="no writable pids cgroup on this host")
def test_bwrap__fork_bomb_is_bounded_by_pids_cgroup_and_time_limit(hostile_site):
    site = hostile_site
    # Never unbounded: the bomb stops by itself after 1,500 processes even if the defence fails.
    marker = f"59.{secrets.randbelow(10**6):06d}"
    bomb = (
        "import os, time\n"
        "n = 0\n"
        f"os.posix_spawn('/usr/bin/sleep', ['sleep', '{marker}'], os.environ, setsid=True)\n"
        "for i in range(1500):\n"
        "    try:\n"
        f"        os.posix_spawn('/usr/bin/sleep', ['sleep', '{marker}'], os.environ)\n"
        "    except OSError as exc:\n"
        "        print('FORK-FAILED', n, exc.strerror, flush=True)\n"
        "        break\n"
        "    n += 1\n"
        "print('STARTED', n, flush=True)\n"
        "time.sleep(600)\n"
    )
    task = shell_task("true")
    task["executors"][0]["command"] = ["python3", "-c", bomb]
    doc = site.run(task)
    out, err = stdout_stderr(doc)
    assert doc["state"] == "SYSTEM_ERROR"
    assert out.startswith("FORK-FAILED"), (out, err)
    started = int(out.split()[1])
    assert started < TASK_MAX_PIDS
    observed("fork_bomb", system_log(doc))
    assert _processes_with(f"sleep {marker}") == []
    assert not (pids_cgroup_root() / f"fedgen-{doc['id']}").exists()
    ended = [r for r in site.audit(doc["id"]) if r["action"] == "TaskEnded"]
    assert ended[0]["outcome"] == "SYSTEM_ERROR"
    site.still_serves()


def test_scheduler__endless_task_with_setsid_child_is_killed(hostile_site):
    site = hostile_site
    marker = f"600.{secrets.randbelow(10**6):06d}"
    started = time.monotonic()
    doc = site.run(shell_task(f"setsid sleep {marker} & sleep {marker}"))
    assert time.monotonic() - started < 60
    assert doc["state"] == "SYSTEM_ERROR"
    observed("endless", system_log(doc))
    assert _processes_with(f"sleep {marker}") == []
    ended = [r for r in site.audit(doc["id"]) if r["action"] == "TaskEnded"]
    assert "max_task_seconds=8" in ended[0]["reason"]
    site.still_serves()


@pytest.mark.skipif(pids_cgroup_root() is None, reason="no writable pids cgroup on this host")
def test_node__sigkill_mid_task_leaves_no_process_or_cgroup_after_restart(hostile_site):
    site = hostile_site
    marker = f"300.{secrets.randbelow(10**6):06d}"
    task_id = site.post(shell_task(f"setsid sleep {marker} & sleep {marker}"))
    deadline = time.monotonic() + 30
    while len(_processes_with(f"sleep {marker}")) < 2:
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.1)
    site.node.kill()
    site.node.start()
    doc = site.wait(task_id)
    assert doc["state"] == "SYSTEM_ERROR"
    observed("node_crash_cleanup", system_log(doc))
    assert _processes_with(f"sleep {marker}") == []
    assert not (pids_cgroup_root() / f"fedgen-{task_id}").exists()
    recovered = [r for r in site.audit(task_id) if r["action"] == "Recover"]
    assert [r["outcome"] for r in recovered] == ["SYSTEM_ERROR"]
    site.still_serves()
