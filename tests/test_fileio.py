"""Atomic writes and compressed-text reading (snakemake_executor_plugin_fedgen.fileio)."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import threading

import pytest
from snakemake_executor_plugin_fedgen import fileio
from snakemake_executor_plugin_fedgen.fileio import (
    AtomicFile,
    atomic_write,
    compression,
    open_binary,
    open_text,
    write_bytes_atomic,
    write_text_atomic,
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- atomic_write --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_atomic_write__exception_mid_write_leaves_no_file_and_no_temp(tmp_path, mode):
    target = tmp_path / "out" / "table.tsv"
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(target, mode) as f:
        f.write("half a line" if mode == "w" else b"half a line")
        f.flush()
        raise RuntimeError("disk on fire")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write__failure_keeps_the_previous_content(tmp_path):
    target = tmp_path / "results.tsv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write("new but unfinished")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.tsv"]


def test_atomic_write__text_and_binary_and_conveniences(tmp_path):
    with atomic_write(tmp_path / "a.txt") as f:
        f.write("héllo\n")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode()
    with atomic_write(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_text_atomic(tmp_path / "new" / "dir" / "c.txt", "x\n")
    assert (tmp_path / "new" / "dir" / "c.txt").read_text() == "x\n"
    write_bytes_atomic(tmp_path / "d.bin", b"y")
    assert (tmp_path / "d.bin").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "d.bin", "new"]


def test_atomic_write__permissions_follow_the_umask_or_perms(tmp_path):
    write_text_atomic(tmp_path / "plain", "x")
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~_umask()
    write_bytes_atomic(tmp_path / "secret", b"k", perms=0o600)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    write_bytes_atomic(tmp_path / "public", b"k", perms=0o644)
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644


def test_atomic_file__content_can_be_checked_before_it_is_published(tmp_path):
    target = tmp_path / "x.tsv"
    out = AtomicFile(target, "w")
    with pytest.raises(ValueError, match="refused"), out as f:
        f.write("a\tb\n")
        f.flush()
        assert out.tmp.parent == tmp_path and out.tmp.read_text() == "a\tb\n"
        assert not target.exists()
        raise ValueError("refused by the check")
    assert list(tmp_path.iterdir()) == []


def test_atomic_file__manual_commit_and_discard(tmp_path):
    kept = AtomicFile(tmp_path / "kept", "wb")
    kept.file.write(b"1")
    kept.commit()
    kept.commit()  # idempotent
    dropped = AtomicFile(tmp_path / "dropped", "wb")
    dropped.file.write(b"2")
    dropped.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert (tmp_path / "kept").read_bytes() == b"1"


def test_atomic_write__file_closed_by_the_caller_still_commits(tmp_path):
    # gzip.open(fileobj=...) and subprocesses write through the file; some callers close it.
    with atomic_write(tmp_path / "t.gz", "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(b"data\n")
        f.close()
    with open_text(tmp_path / "t.gz") as f:
        assert f.read() == "data\n"


def test_atomic_write__concurrent_writers_never_expose_partial_content(tmp_path):
    target = tmp_path / "shared.tsv"
    size = 1 << 20
    contents = {bytes([65 + i]) * size for i in range(4)}
    stop = threading.Event()
    errors: list[str] = []

    def writer(payload: bytes) -> None:
        try:
            for _ in range(15):
                with atomic_write(target, "wb") as f:
                    for start in range(0, size, 1 << 16):  # many small writes
                        f.write(payload[start : start + (1 << 16)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    def reader() -> None:
        while not stop.is_set():
            try:
                data = target.read_bytes()
            except FileNotFoundError:
                continue
            if data not in contents:
                errors.append(f"partial content of {len(data)} bytes")
                return

    threads = [threading.Thread(target=writer, args=(c,)) for c in contents]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    assert target.read_bytes() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["shared.tsv"]


# -- reading -------------------------------------------------------------------------------------

TEXT = "chromosome\tbase_pair_location\n" + "".join(f"1\t{i}\n" for i in range(1, 5000))


def test_open_text__plain_and_gzip_by_content_not_name(tmp_path):
    plain = tmp_path / "plain.tsv.gz"  # a misleading name: the content decides
    plain.write_text(TEXT)
    packed = tmp_path / "packed.tsv"
    packed.write_bytes(gzip.compress(TEXT.encode()))
    assert compression(plain) is None and compression(packed) == "gzip"
    for path in (plain, packed):
        with open_text(path) as f:
            assert f.read() == TEXT
        with open_binary(path) as f:
            assert f.read() == TEXT.encode()


def test_open_text__multi_member_gzip(tmp_path):
    # BGZF is a series of gzip members; a reader that stops after the first loses data.
    path = tmp_path / "members.tsv.gz"
    half = len(TEXT) // 2
    path.write_bytes(gzip.compress(TEXT[:half].encode()) + gzip.compress(TEXT[half:].encode()))
    with open_text(path) as f:
        assert f.read() == TEXT


@pytest.mark.skipif(shutil.which("bgzip") is None, reason="bgzip (htslib) not installed")
def test_open_text__bgzip_output(tmp_path):
    path = tmp_path / "table.tsv"
    path.write_text(TEXT * 20)  # larger than one 64 KiB BGZF block
    subprocess.run(["bgzip", "-f", str(path)], check=True)
    bgz = tmp_path / "table.tsv.gz"
    assert compression(bgz) == "gzip"
    with open_text(bgz) as f:
        assert f.read() == TEXT * 20


def test_open_text__newline_and_errors_options(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(gzip.compress(b"a\r\nb\xff\n"))
    with open_text(path, newline="\n", errors="replace") as f:
        assert f.read() == "a\r\nb\ufffd\n"
    with open_text(path, errors="replace") as f:
        assert f.read() == "a\nb\ufffd\n"


def test_open_text__truncated_gzip_raises_while_reading(tmp_path):
    path = tmp_path / "cut.tsv.gz"
    data = gzip.compress(TEXT.encode())
    path.write_bytes(data[: len(data) - 12])
    with pytest.raises((OSError, EOFError, *fileio.DECOMPRESS_ERRORS)), open_text(path) as f:
        f.read()


def test_compression__other_formats(tmp_path):
    zst = tmp_path / "x.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 8)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert compression(zst) == "zstd"
    assert compression(empty) is None
