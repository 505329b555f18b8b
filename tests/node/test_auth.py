"""Bearer tokens: who may call, who sees which task, and that tokens never reach a log."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import yaml

from tests.node.conftest import simple_task, wait_task

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210"


def test_auth__missing_or_wrong_token_is_401(site, start_node, tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"alice": ALICE, "bob": BOB}))
    node = start_node(site.state, config=site.config(token_file=str(tokens)))
    # service-info is public: clients discover the node before they authenticate.
    assert httpx.get(f"{node.url}/service-info").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-xyz"}, {"Authorization": ALICE}):
        for method, path in (("GET", "/tasks"), ("POST", "/tasks"), ("GET", "/tasks/x")):
            resp = httpx.request(method, node.url + path, headers=headers, json=simple_task("true"))
            assert resp.status_code == 401, (headers, path)
            assert resp.json()["message"]
            assert resp.headers["www-authenticate"] == "Bearer"


def test_auth__unauthenticated_body_is_refused_before_it_is_read(site, start_node, tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"alice": ALICE}))
    node = start_node(site.state, config=site.config(token_file=str(tokens)))
    # A 4 MB body (under max_request_bytes) is announced and only its first bytes are sent: a
    # node that read (buffered) the body before checking the caller would wait for the rest
    # instead of answering. (Larger bodies are refused 413 from Content-Length alone.)
    host = f"Host: {node.host}:{node.port}\r\n".encode()
    head = (
        b"POST /ga4gh/tes/v1/tasks HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
        b"Content-Length: 4000000\r\n\r\n"
    )
    for auth in (b"", b"Authorization: Bearer wrong-token-xyz\r\n"):
        request = head.replace(host, host + auth)
        with socket.create_connection((node.host, node.port), timeout=10) as sock:
            sock.sendall(request + b'{"executors": [' + b" " * 65536)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_auth__callers_see_and_cancel_only_their_own_tasks(site, start_node, tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"alice": ALICE, "bob": BOB}))
    node = start_node(site.state, config=site.config(token_file=str(tokens), runtime="host"))
    alice = {"Authorization": f"Bearer {ALICE}"}
    bob = {"Authorization": f"Bearer {BOB}"}
    a_task = httpx.post(f"{node.url}/tasks", json=simple_task("sleep 30"), headers=alice).json()[
        "id"
    ]
    b_task = httpx.post(f"{node.url}/tasks", json=simple_task("true"), headers=bob).json()["id"]
    assert httpx.get(f"{node.url}/tasks/{a_task}", headers=alice).status_code == 200
    assert httpx.get(f"{node.url}/tasks/{a_task}", headers=bob).status_code == 404
    assert httpx.post(f"{node.url}/tasks/{a_task}:cancel", headers=bob).status_code == 404
    assert httpx.get(f"{node.url}/tasks/{a_task}", headers=alice).json()["state"] != "CANCELED"
    seen_by_bob = httpx.get(f"{node.url}/tasks", headers=bob).json()["tasks"]
    assert [t["id"] for t in seen_by_bob] == [b_task]
    seen_by_alice = httpx.get(f"{node.url}/tasks", headers=alice).json()["tasks"]
    assert [t["id"] for t in seen_by_alice] == [a_task]
    assert httpx.post(f"{node.url}/tasks/{a_task}:cancel", headers=alice).status_code == 200
    assert wait_task(node.url, a_task, headers=alice)["state"] == "CANCELED"
    node.stop()
    audit = (site.state / "audit.jsonl").read_text()
    records = [yaml.safe_load(line) for line in audit.splitlines()]
    assert {
        "caller": "bob",
        "action": "CancelTask",
        "task": a_task,
        "outcome": "404",
    }.items() <= next(
        r for r in records if r["action"] == "CancelTask" and r["caller"] == "bob"
    ).items()
    for text in (audit, node.log_tail(100_000)):
        assert ALICE not in text and BOB not in text


def test_auth__no_token_file_refuses_non_loopback_host(site, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "node",
            "--host",
            "0.0.0.0",
            "--port",
            "1",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "without a token_file" in proc.stderr


def test_audit__every_request_kind_is_recorded_append_only(site, start_node):
    node = start_node(site.state, config=site.config(runtime="host"))
    task_id = httpx.post(f"{node.url}/tasks", json=simple_task("true")).json()["id"]
    wait_task(node.url, task_id)
    httpx.get(f"{node.url}/tasks")
    httpx.post(f"{node.url}/tasks/{task_id}:cancel")
    httpx.post(f"{node.url}/tasks", json={"executors": []})
    httpx.get(f"{node.egress_read_url}/nothing.tsv")
    first = (site.state / "audit.jsonl").read_text()
    node.restart()
    text = (site.state / "audit.jsonl").read_text()
    assert text.startswith(first)  # a restart appends, never rewrites
    records = [yaml.safe_load(line) for line in text.splitlines()]
    assert all({"time", "caller", "action", "task", "outcome"} <= r.keys() for r in records)
    seen = {(r["action"], r["outcome"]) for r in records}
    for expected in [
        ("CreateTask", "QUEUED"),
        ("CreateTask", "400"),
        ("GetTask", "COMPLETE"),
        ("ListTasks", "1 tasks"),
        ("CancelTask", "COMPLETE"),
        ("TaskEnded", "COMPLETE"),
        ("GetEgress", "404"),
        ("Stop", "ok"),
    ]:
        assert expected in seen, expected
    assert [r["action"] for r in records].count("Start") == 2
