"""The node's ingress store (node/ingress.py): garbage collection, use marks, staging checks.

The HTTP endpoint and the attacks on it are in tests/security/test_ingress.py (real nodes).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.errors import InvalidTask, StorageError

from snakemake_fedgen.node.ingress import IngressStore, ingress_digest

DAY = 86400.0


def _store(tmp_path: Path) -> IngressStore:
    return IngressStore(tmp_path / "ingress", max_bytes=1 << 20, quota=1 << 22, keep_seconds=DAY)


def _upload(store: IngressStore, area: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    upload = store.begin(area, digest, length=len(data))
    try:
        upload.write(data)
        assert upload.commit()
    finally:
        upload.close()
    return digest


def test_collect_garbage__removes_files_unused_for_keep_days_keeps_used_ones(tmp_path):
    store = _store(tmp_path)
    old = _upload(store, "static-alice", b"old coefficients")
    used = _upload(store, "static-alice", b"used coefficients")
    area = tmp_path / "ingress" / "static-alice"
    two_days_ago = time.time() - 2 * DAY
    for name in (old, used):
        os.utime(area / name, (two_days_ago, two_days_ago))
    # A task referencing `used` marks it (CreateTask does this, and staging does again).
    assert store.check_present("static-alice", used, what="inputs[0]") == len(b"used coefficients")
    assert store.collect_garbage() == [f"static-alice/{old}"]
    assert sorted(os.listdir(area)) == [used]
    with pytest.raises(InvalidTask, match="ingress_keep_days"):
        store.check_present("static-alice", old, what="inputs[0]")


def test_collect_garbage__crash_leftovers_removed_at_start_only(tmp_path):
    store = _store(tmp_path)
    digest = hashlib.sha256(b"abc").hexdigest()
    upload = store.begin("static-alice", digest, length=None)
    upload.write(b"ab")
    # An upload in flight is never collected.
    assert store.collect_garbage(stale_parts=True) == []
    upload.close()
    leftover = tmp_path / "ingress" / "static-alice" / ".crash.abc.part"
    leftover.write_bytes(b"x")
    assert store.collect_garbage() == []
    assert store.collect_garbage(stale_parts=True) == ["static-alice/.crash.abc.part"]


def test_stage__copy_is_0444_and_a_changed_file_is_refused(tmp_path):
    store = _store(tmp_path)
    digest = _upload(store, "static-alice", b"\x00\x01 binary")
    dest = tmp_path / "task" / "in.bin"
    dest.parent.mkdir()
    assert store.stage("static-alice", digest, dest) == 9
    assert dest.read_bytes() == b"\x00\x01 binary" and dest.stat().st_mode & 0o777 == 0o444
    (tmp_path / "ingress" / "static-alice" / digest).write_bytes(b"changed")
    with pytest.raises(StorageError, match="no longer has that sha256"):
        store.stage("static-alice", digest, tmp_path / "task" / "again.bin")
    assert not (tmp_path / "task" / "again.bin").exists()


def test_ingress_digest__one_spelling_only():
    digest = "ab" * 32
    assert ingress_digest(f"fedgen-ingress:sha256:{digest}") == digest
    for url in (
        f"fedgen-ingress:sha256:{digest.upper()}",
        f"fedgen-ingress:sha256:{digest}\n",
        f"fedgen-ingress:sha256:{digest}/x",
        "fedgen-ingress:sha256:../" + digest[3:],
    ):
        with pytest.raises(InvalidTask, match="is not an ingress URL"):
            ingress_digest(url)
