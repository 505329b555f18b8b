"""The bwrap sandbox and storage confinement: what a task can and cannot reach."""

from __future__ import annotations

import socket

import httpx

from tests.node.conftest import simple_task, wait_task


def _post(node, task) -> httpx.Response:
    return httpx.post(f"{node.url}/tasks", json=task)


def test_bwrap__task_cannot_read_host_files_outside_its_root(site, start_node, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    other_root = site.data / "other.txt"  # inside a read root, but not an input of the task
    other_root.write_text("other data\n")
    (site.data / "in.txt").write_text("input\n")
    node = start_node(site.state, config=site.config())
    assert secret.read_text() == "host secret\n"  # the host can read it
    task = simple_task(
        f"cat in.txt; cat {secret} || echo NO-SECRET; cat {other_root} || echo NO-OTHER; "
        f"ls {site.state} || echo NO-STATE; echo x >> in.txt || echo READ-ONLY",
        inputs=[{"path": "/fedgen/work/in.txt", "url": (site.data / "in.txt").as_uri()}],
    )
    doc = wait_task(node.url, _post(node, task).json()["id"])
    assert doc["state"] == "COMPLETE"
    out = doc["logs"][0]["logs"][0]["stdout"].split()
    assert out == ["input", "NO-SECRET", "NO-OTHER", "NO-STATE", "READ-ONLY"]
    assert (site.data / "in.txt").read_text() == "input\n"


def test_bwrap__task_cannot_connect_to_loopback_listener(site, start_node, tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        probe = (
            "import socket\n"
            f"try:\n socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\n"
            "except OSError as e:\n print('BLOCKED', type(e).__name__)\n"
        )
        results = {}
        for runtime in ("bwrap", "host"):
            node = start_node(tmp_path / runtime, config=site.config(runtime=runtime))
            task = simple_task("true")
            task["executors"][0]["command"] = ["/usr/bin/python3", "-c", probe]
            doc = wait_task(node.url, _post(node, task).json()["id"])
            results[runtime] = doc["logs"][0]["logs"][0]["stdout"].split()[0]
            node.stop()
        # The same probe connects without the sandbox, so the check can fail.
        assert results == {"bwrap": "BLOCKED", "host": "CONNECTED"}


def test_inputs__traversal_and_symlink_escape_are_refused(site, start_node, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("outside\n")
    (site.data / "link.txt").symlink_to(outside)
    (site.data / "dirlink").mkdir()
    (site.data / "dirlink" / "esc").symlink_to(outside)
    node = start_node(site.state, config=site.config())
    cases = {
        f"file://{site.data}/../../outside.txt": "'..'",
        (site.data / "link.txt").as_uri(): "symlink",
        outside.as_uri(): "outside the allowed roots",
        "file:///etc/passwd": "outside the allowed roots",
    }
    for url, fragment in cases.items():
        resp = _post(node, simple_task("true", inputs=[{"path": "/fedgen/work/x", "url": url}]))
        assert resp.status_code == 400, url
        assert fragment in resp.json()["message"], resp.json()
    resp = _post(
        node,
        simple_task(
            "true",
            inputs=[
                {
                    "path": "/fedgen/work/d",
                    "url": (site.data / "dirlink").as_uri(),
                    "type": "DIRECTORY",
                }
            ],
        ),
    )
    assert resp.status_code == 400
    assert "symlink" in resp.json()["message"]


def test_outputs__traversal_and_symlink_escape_are_refused(site, start_node, tmp_path):
    escape_dir = tmp_path / "elsewhere"
    escape_dir.mkdir()
    # A symlink in the caller's own area of the write root (the node writes there only).
    site.area().mkdir()
    (site.area() / "linkdir").symlink_to(escape_dir)
    node = start_node(site.state, config=site.config())
    for url, fragment in {
        f"file://{site.work}/../x.txt": "'..'",
        (site.work / "linkdir" / "x.txt").as_uri(): "symlink",
        (tmp_path / "x.txt").as_uri(): "outside",
    }.items():
        resp = _post(node, simple_task("true", outputs=[{"path": "/fedgen/work/x", "url": url}]))
        assert resp.status_code == 400, url
        assert fragment in resp.json()["message"]
    # A task that links its output to a host file gets nothing out of it.
    task = simple_task(
        "ln -s /etc/hostname out.txt",
        outputs=[{"path": "/fedgen/work/out.txt", "url": (site.work / "out.txt").as_uri()}],
    )
    doc = wait_task(node.url, _post(node, task).json()["id"])
    assert doc["state"] == "SYSTEM_ERROR"
    assert "symlink" in doc["logs"][0]["system_logs"][0]
    assert not (site.area() / "out.txt").exists()
    assert list(escape_dir.iterdir()) == []


def test_bwrap__task_runs_site_tools_and_fedgen(site, start_node):
    node = start_node(site.state, config=site.config())
    task = simple_task("plink2 --version && bcftools --version | head -1 && fedgen --version")
    doc = wait_task(node.url, _post(node, task).json()["id"])
    assert doc["state"] == "COMPLETE", doc["logs"]
    out = doc["logs"][0]["logs"][0]["stdout"]
    assert "PLINK v2" in out and "bcftools" in out and "fedgen " in out
    assert doc["logs"][0]["metadata"]["runtime"] == "bwrap"


def test_bwrap__task_path_over_root_keeps_tools_visible(site, start_node):
    # A container path under /root (where this interpreter may live) must not hide the tools.
    node = start_node(site.state, config=site.config())
    task = simple_task("fedgen --version > /root/v.txt && cat /root/v.txt")
    task["executors"][0]["workdir"] = "/root/work"
    doc = wait_task(node.url, _post(node, task).json()["id"])
    assert doc["state"] in ("COMPLETE",), doc["logs"]
    assert doc["logs"][0]["logs"][0]["stdout"].startswith("fedgen ")
