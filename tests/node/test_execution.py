"""Task execution on a real node: executors, files, states, scheduling, cancel, time limits."""

from __future__ import annotations

import http.server
import threading
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import httpx

from snakemake_fedgen.node.runtime import BwrapRuntime, EngineRuntime, TaskLayout
from tests.node.conftest import simple_task, wait_state, wait_task


def _post(node, task) -> str:
    resp = httpx.post(f"{node.url}/tasks", json=task)
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_executors__run_in_order_with_env_stdin_stdout_and_ignore_error(site, start_node):
    node = start_node(site.state, config=site.config())
    task = {
        "name": "files",
        "inputs": [{"path": "/fedgen/work/in.txt", "content": "b\na\nc\n"}],
        "outputs": [
            {"path": "/fedgen/work/sorted.txt", "url": (site.work / "sorted.txt").as_uri()},
            {"path": "/fedgen/work/env.txt", "url": (site.work / "env.txt").as_uri()},
        ],
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["sort"],
                "stdin": "/fedgen/work/in.txt",
                "stdout": "/fedgen/work/sorted.txt",
            },
            {
                "image": "fedgen/tools:0.1",
                "command": ["sh", "-c", 'echo "$GREETING $(head -1 sorted.txt)" > env.txt; exit 7'],
                "workdir": "/fedgen/work",
                "env": {"GREETING": "hi"},
                "ignore_error": True,
            },
            {"image": "fedgen/tools:0.1", "command": ["sh", "-c", "echo to-err >&2; echo to-out"]},
        ],
    }
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "COMPLETE", doc
    logs = doc["logs"][0]["logs"]
    assert [e["exit_code"] for e in logs] == [0, 7, 0]
    assert logs[2]["stdout"] == "to-out\n"
    assert logs[2]["stderr"] == "to-err\n"
    starts = [datetime.fromisoformat(e["start_time"]) for e in logs]
    ends = [datetime.fromisoformat(e["end_time"]) for e in logs]
    assert starts[1] >= ends[0] and starts[2] >= ends[1]
    assert (site.area() / "sorted.txt").read_text() == "a\nb\nc\n"
    assert (site.area() / "env.txt").read_text() == "hi a\n"


def test_executors__stdin_from_a_bound_input_reads_the_input(site, start_node):
    # Under bwrap a file input is bound read-only at its path over an empty placeholder: the
    # executor's stdin must be the input, not the placeholder.
    node = start_node(site.state, config=site.config())
    site.area().mkdir(parents=True, exist_ok=True)
    (site.area() / "in.txt").write_text("z\ny\n")
    task = {
        "name": "stdin-input",
        "inputs": [{"path": "/fedgen/work/in.txt", "url": (site.work / "in.txt").as_uri()}],
        "outputs": [{"path": "/fedgen/work/out.txt", "url": (site.work / "out.txt").as_uri()}],
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["sort"],
                "stdin": "/fedgen/work/in.txt",
                "stdout": "/fedgen/work/out.txt",
            }
        ],
    }
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "COMPLETE", doc
    assert (site.area() / "out.txt").read_text() == "y\nz\n"


def test_executors__first_failure_ends_task_executor_error(site, start_node):
    node = start_node(site.state, config=site.config())
    task = simple_task("echo boom >&2; exit 3")
    task["executors"].append({"image": "fedgen/tools:0.1", "command": ["touch", "/fedgen/work/x"]})
    task["outputs"] = [{"path": "/fedgen/work/x", "url": (site.work / "x").as_uri()}]
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "EXECUTOR_ERROR"
    assert len(doc["logs"][0]["logs"]) == 1
    assert doc["logs"][0]["logs"][0]["exit_code"] == 3
    assert doc["logs"][0]["logs"][0]["stderr"] == "boom\n"
    assert not (site.area() / "x").exists()


def test_outputs__directory_and_wildcard_with_path_prefix(site, start_node):
    (site.data / "ref").mkdir()
    (site.data / "ref" / "a.txt").write_text("A")
    (site.data / "ref" / "sub").mkdir()
    (site.data / "ref" / "sub" / "b.txt").write_text("B")
    node = start_node(site.state, config=site.config())
    task = simple_task(
        "mkdir -p out/d/e && cp -r ref/. out/d/ && echo 1 > out/c1.tsv && echo 2 > out/c2.tsv",
        inputs=[
            {"path": "/fedgen/work/ref", "url": (site.data / "ref").as_uri(), "type": "DIRECTORY"}
        ],
        outputs=[
            {
                "path": "/fedgen/work/out/d",
                "url": (site.work / "dir").as_uri(),
                "type": "DIRECTORY",
            },
            {
                "path": "/fedgen/work/out/c*.tsv",
                "path_prefix": "/fedgen/work/out",
                "url": (site.work / "glob").as_uri(),
            },
        ],
    )
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert (site.area() / "dir" / "a.txt").read_text() == "A"
    assert (site.area() / "dir" / "sub" / "b.txt").read_text() == "B"
    assert (site.area() / "glob" / "c1.tsv").read_text() == "1\n"
    assert (site.area() / "glob" / "c2.tsv").read_text() == "2\n"
    urls = {o["url"] for o in doc["logs"][0]["outputs"]}
    assert (site.work / "glob" / "c2.tsv").as_uri() in urls
    assert (site.work / "dir" / "sub" / "b.txt").as_uri() in urls
    assert len(urls) == 4


def test_inputs__http_url_is_fetched(site, start_node, tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    (served / "panel.txt").write_text("from http\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        node = start_node(site.state, config=site.config(allowed_input_hosts=[f"127.0.0.1:{port}"]))
        url = f"http://127.0.0.1:{port}/panel.txt"
        task = simple_task(
            "cat panel.txt",
            inputs=[{"path": "/fedgen/work/panel.txt", "url": url}],
        )
        doc = wait_task(node.url, _post(node, task))
        assert doc["state"] == "COMPLETE"
        assert doc["logs"][0]["logs"][0]["stdout"] == "from http\n"
        missing = simple_task("true", inputs=[{"path": "/fedgen/work/x", "url": url + ".nope"}])
        doc = wait_task(node.url, _post(node, missing))
        assert doc["state"] == "SYSTEM_ERROR"
        assert "HTTP 404" in doc["logs"][0]["system_logs"][0]
    finally:
        server.shutdown()
        server.server_close()


def test_cancel__kills_the_whole_process_group(site, start_node, shared_dir):
    node = start_node(site.state, config=site.config(runtime="host"))
    pidfile = shared_dir / "child.pid"
    task = simple_task(f"sleep 300 & echo $! > {pidfile}; wait")
    task_id = _post(node, task)
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert _alive(child)
    assert httpx.post(f"{node.url}/tasks/{task_id}:cancel").status_code == 200
    assert wait_state(node.url, task_id, ("CANCELED",)) == "CANCELED"
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_cancel__queued_task_never_runs(site, start_node, shared_dir):
    node = start_node(site.state, config=site.config(runtime="host", cpu_cores=1))
    blocker = _post(node, simple_task("sleep 60"))
    marker = shared_dir / "ran"
    queued = _post(node, simple_task(f"touch {marker}"))
    assert httpx.get(f"{node.url}/tasks/{queued}").json()["state"] == "QUEUED"
    httpx.post(f"{node.url}/tasks/{queued}:cancel")
    httpx.post(f"{node.url}/tasks/{blocker}:cancel")
    assert wait_task(node.url, queued)["state"] == "CANCELED"
    assert wait_task(node.url, blocker)["state"] == "CANCELED"
    assert not marker.exists()


def _intervals(node, ids):
    out = []
    for task_id in ids:
        doc = wait_task(node.url, task_id)
        assert doc["state"] == "COMPLETE"
        log = doc["logs"][0]["logs"][0]
        out.append(
            (datetime.fromisoformat(log["start_time"]), datetime.fromisoformat(log["end_time"]))
        )
    return sorted(out)


def _max_overlap(intervals) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    busy = peak = 0
    for _, step in events:
        busy += step
        peak = max(peak, busy)
    return peak


def test_scheduler__never_more_cores_busy_than_configured(site, start_node, shared_dir):
    node = start_node(site.state, config=site.config(runtime="host", cpu_cores=2))
    two_core = [_post(node, simple_task("sleep 0.4", resources={"cpu_cores": 2})) for _ in range(3)]
    assert _max_overlap(_intervals(node, two_core)) == 1
    # Two one-core tasks run at the same time: each waits (up to 60 s) for the other's marker,
    # so both complete only if they overlapped, however loaded the machine is.
    barrier = (
        "touch {me}; for i in $(seq 600); do [ -e {other} ] && exit 0; sleep 0.1; done; exit 1"
    )
    a, b = shared_dir / "a", shared_dir / "b"
    one_core = [
        _post(node, simple_task(barrier.format(me=a, other=b))),
        _post(node, simple_task(barrier.format(me=b, other=a))),
    ]
    assert _max_overlap(_intervals(node, one_core)) == 2
    # A request above the node's cores is capped to them instead of waiting forever.
    huge = _post(node, simple_task("true", resources={"cpu_cores": 64}))
    assert wait_task(node.url, huge)["state"] == "COMPLETE"


def test_max_task_seconds__kills_endless_task_with_reason(site, start_node):
    node = start_node(site.state, config=site.config(max_task_seconds=1))
    doc = wait_task(node.url, _post(node, simple_task("sleep 120")))
    assert doc["state"] == "SYSTEM_ERROR"
    assert "max_task_seconds=1" in doc["logs"][0]["system_logs"][-1]


def test_host_runtime__runs_in_mapped_workdir(site, start_node):
    node = start_node(site.state, config=site.config(runtime="host"))
    (site.data / "in.txt").write_text("host\n")
    task = simple_task(
        "cat in.txt > out.txt && pwd",
        inputs=[{"path": "/fedgen/work/in.txt", "url": (site.data / "in.txt").as_uri()}],
        outputs=[{"path": "/fedgen/work/out.txt", "url": (site.work / "o.txt").as_uri()}],
    )
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "COMPLETE"
    assert doc["logs"][0]["metadata"]["runtime"] == "host"
    assert doc["logs"][0]["logs"][0]["stdout"].strip().endswith("/root/fedgen/work")
    assert (site.area() / "o.txt").read_text() == "host\n"


def test_engine_runtime__builds_docker_run_command_line(tmp_path):
    # Only the generated argv; tests/security/test_container_runtime.py runs a live podman.
    root = tmp_path / "root"
    (root / "fedgen" / "work").mkdir(parents=True)
    layout = TaskLayout(
        root=root, tmp=tmp_path / "tmp", binds=((Path("/srv/g.vcf"), "/fedgen/work/g.vcf"),)
    )
    executor = {
        "image": "fedgen/tools:0.1",
        "command": ["plink2", "--version"],
        "workdir": "/fedgen/work",
        "env": {"A": "1"},
    }
    for engine in ("docker", "podman"):
        runtime = EngineRuntime(engine, allowed_images=["fedgen/tools:*"])
        launch = runtime.launch(executor, layout, task_id="t1")
        argv = launch.argv
        assert argv[:2] == [engine, "run"] and "--rm" in argv
        assert argv[argv.index("--network") + 1] == "none"
        assert argv[argv.index("--") :] == ["--", "fedgen/tools:0.1", "plink2", "--version"]
        volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
        assert volumes == [
            f"{root}/fedgen:/fedgen",
            f"{tmp_path}/tmp:/tmp",
            "/srv/g.vcf:/fedgen/work/g.vcf:ro",
        ]
        assert argv[argv.index("-w") + 1] == "/fedgen/work"
        assert "A=1" in argv
        assert "A" not in launch.env  # task env goes through -e, not the engine client's env
        assert runtime.kill_argv("t1") == [engine, "kill", "fedgen-t1"]


def test_bwrap_runtime__command_line_isolates_the_task(tmp_path):
    root = tmp_path / "root"
    (root / "fedgen").mkdir(parents=True)
    layout = TaskLayout(
        root=root, tmp=tmp_path / "tmp", binds=((Path("/srv/g.vcf"), "/fedgen/g.vcf"),)
    )
    argv = BwrapRuntime().launch({"image": "x", "command": ["true"]}, layout, task_id="t").argv
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--clearenv"):
        assert flag in argv
    i = argv.index("/srv/g.vcf")
    assert argv[i - 1 : i + 2] == ["--ro-bind", "/srv/g.vcf", "/fedgen/g.vcf"]
    # The input is bound after (over) the task directory that holds its mount point.
    assert i > argv.index(f"{root}/fedgen")
    assert "/" not in [argv[k + 1] for k, a in enumerate(argv) if a in ("--bind", "--ro-bind")]


def test_outputs__above_max_output_bytes_are_refused(site, start_node):
    node = start_node(site.state, config=site.config(max_output_bytes=100))
    task = simple_task(
        "head -c 500 /dev/zero > big.bin",
        outputs=[{"path": "/fedgen/work/big.bin", "url": (site.work / "big.bin").as_uri()}],
    )
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "SYSTEM_ERROR"
    assert "max_output_bytes 100" in doc["logs"][0]["system_logs"][0]
    assert not (site.area() / "big.bin").exists()


def test_volumes__shared_between_executors(site, start_node):
    node = start_node(site.state, config=site.config())
    task = simple_task("echo shared > /vol/a/x.txt", volumes=["/vol/a"])
    task["executors"].append({"image": "fedgen/tools:0.1", "command": ["cat", "/vol/a/x.txt"]})
    doc = wait_task(node.url, _post(node, task))
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert doc["logs"][0]["logs"][1]["stdout"] == "shared\n"


def test_final_state__visible_only_after_the_scratch_directory_is_gone(site, start_node):
    node = start_node(site.state, config=site.config())
    # Thousands of scratch files make the clean-up take a while; a caller polling fast must
    # still never see the final state while the task's directory exists.
    task_id = _post(node, simple_task("mkdir s && cd s && seq 20000 | xargs touch"))
    task_dir = node.state_dir / "tasks" / task_id
    deadline = time.monotonic() + 60
    state = "QUEUED"
    while time.monotonic() < deadline:
        state = httpx.get(f"{node.url}/tasks/{task_id}").json()["state"]
        if state not in ("QUEUED", "INITIALIZING", "RUNNING"):
            break
        time.sleep(0.005)
    assert state == "COMPLETE"
    assert not task_dir.exists()


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a redirect to the URL in the server's ``target`` attribute."""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.server.target)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_inputs__http_hosts_outside_the_allow_list_are_refused(site, start_node, tmp_path):
    # Server-side request forgery: a caller must not make the node fetch from hosts inside the
    # site network that the steward did not list, neither directly nor through a redirect.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    port = server.server_address[1]
    server.target = f"http://localhost:{port}/secret"  # same server, a host name not allowed
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        closed = start_node(site.state, config=site.config())
        task = simple_task("true", inputs=[{"path": "/fedgen/work/x", "url": server.target}])
        resp = httpx.post(f"{closed.url}/tasks", json=task)
        assert resp.status_code == 400
        assert "allowed_input_hosts: none" in resp.text
        info = httpx.get(f"{closed.url}/service-info").json()
        assert "http" not in info["fedgen"]["storage_schemes"]
        closed.stop()

        node = start_node(
            tmp_path / "state2", config=site.config(allowed_input_hosts=[f"127.0.0.1:{port}"])
        )
        url = f"http://127.0.0.1:{port}/panel.txt"
        task = simple_task("true", inputs=[{"path": "/fedgen/work/x", "url": url}])
        doc = wait_task(node.url, _post(node, task))
        assert doc["state"] == "SYSTEM_ERROR"
        assert f"does not fetch http(s) inputs from localhost:{port}" in str(doc["logs"])
    finally:
        server.shutdown()
        server.server_close()
