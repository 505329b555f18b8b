"""runtime docker/podman as a security boundary: the image is an image, the container is locked.

The attack (issue "The site node as a real security boundary"): the image was not separated from
the engine's options, so ``image: "--privileged"`` with ``command: ["-v", "/:/host", "alpine",
...]`` became ``podman run ... --privileged -v /:/host alpine ...``: a privileged container with
the host's root mounted, accepted by the default empty allow-list.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import FedgenError

from snakemake_fedgen.node.images import image_allowed, parse_image, pinned
from snakemake_fedgen.node.runtime import EngineRuntime, TaskLayout
from tests.node.conftest import wait_task
from tests.security.podman import CONTAINERS_CONF, podman_env

needs_podman_command = pytest.mark.skipif(
    shutil.which("podman") is None, reason="podman is not installed (make install installs it)"
)
TOKEN = "steward-test-token-0123456789"


def podman_config(site, **extra):
    return site.config(runtime="podman", containers_conf=str(CONTAINERS_CONF), **extra)


def attack_task(marker: Path, image: str = "--privileged") -> dict:
    return {
        "name": "attack",
        "executors": [
            {
                "image": image,
                "command": ["-v", "/:/host", "alpine", "sh", "-c", f"touch /host{marker}"],
            }
        ],
    }


@needs_podman_command
def test_attack__option_as_image_is_refused_at_submission_and_never_runs(site, start_node):
    marker = site.root / "pwned-by-privileged-container"
    # Even the most permissive allow-list a steward could write does not let an option through.
    node = start_node(site.state, config=podman_config(site, allowed_images=["*"]))
    bad_images = [
        "--privileged",
        "-v",
        "--volume=/:/host",
        "alpine --privileged",
        "alpine\t--privileged",
        "alpine\n",
        "alpine\x00",
        " alpine",
        "Alpine",  # repository names are lower case
        "alpine:",
        "alpine@sha256:xyz",
        "a//b",
        "a/../b",
        "",
    ]
    for image in bad_images:
        resp = httpx.post(f"{node.url}/tasks", json=attack_task(marker, image))
        assert resp.status_code == 400, (image, resp.text)
        assert "image" in resp.json()["message"], resp.json()
    assert httpx.get(f"{node.url}/tasks").json()["tasks"] == []
    assert not marker.exists()


@needs_podman_command
def test_attack__empty_allow_list_is_refused_under_an_engine(site, start_node):
    # Under docker/podman the image is real software: the node does not start without a list.
    with pytest.raises(FedgenError, match="allowed_images"):
        start_node(site.state, config=podman_config(site), startup_timeout=30)


def test_attack__engine_runtime_never_puts_an_option_where_the_image_goes(tmp_path):
    # Defence in depth: a task stored before the submission check (or a bug there) still
    # cannot turn its image into engine options.
    root = tmp_path / "root"
    (root / "fedgen").mkdir(parents=True)
    layout = TaskLayout(root=root, tmp=tmp_path / "tmp")
    runtime = EngineRuntime("podman", allowed_images=["*"])
    for image in ("--privileged", "alpine --privileged", "-v"):
        executor = {"image": image, "command": ["-v", "/:/host", "alpine", "id"]}
        with pytest.raises(FedgenError, match="image"):
            runtime.launch(executor, layout, task_id="t1")
    # An image outside the allow-list is refused at launch too.
    strict = EngineRuntime("podman", allowed_images=["localhost/tools@sha256:" + "a" * 64])
    for image in ("localhost/tools:latest", "localhost/tools@sha256:" + "b" * 64):
        with pytest.raises(FedgenError, match="allow-list"):
            strict.launch({"image": image, "command": ["id"]}, layout, task_id="t1")


def test_engine_runtime__hardened_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NODE_SECRET", "do-not-pass")
    root = tmp_path / "root"
    (root / "fedgen" / "work").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    layout = TaskLayout(
        root=root,
        tmp=tmp_path / "tmp",
        binds=((Path("/srv/g.vcf"), "/fedgen/work/g.vcf"),),
        cpus=2,
        memory_bytes=2 * 10**9,
    )
    image = "localhost/tools@sha256:" + "a" * 64
    executor = {
        "image": image,
        "command": ["--privileged", "-v", "/:/host"],  # after the image: arguments, not options
        "workdir": "/fedgen/work",
        "env": {"A": "1"},
    }
    for engine in ("docker", "podman"):
        runtime = EngineRuntime(engine, allowed_images=[image], user="1234:5678")
        argv = runtime.launch(executor, layout, task_id="t1").argv
        assert argv[0] == engine and argv[1] == "run"
        sep = argv.index("--")
        assert argv[sep + 1 :] == [image, "--privileged", "-v", "/:/host"]
        opts = argv[:sep]
        pairs = list(itertools.pairwise(opts))
        for flag, value in [
            ("--network", "none"),
            ("--cap-drop", "ALL"),
            ("--security-opt", "no-new-privileges"),
            ("--user", "1234:5678"),
            ("--pids-limit", "1024"),
            ("--memory", str(2 * 10**9)),
            ("--cpus", "2"),
            ("--pull", "never"),
            ("--name", "fedgen-t1"),
            ("-w", "/fedgen/work"),
        ]:
            assert (flag, value) in pairs, (flag, argv)
        assert "--read-only" in opts and "--rm" in opts
        assert "--privileged" not in opts
        mounts = [b for a, b in pairs if a == "-v"]
        assert mounts == [
            f"{root}/fedgen:/fedgen",
            f"{tmp_path}/tmp:/tmp",
            "/srv/g.vcf:/fedgen/work/g.vcf:ro",
        ]
        envs = [b for a, b in pairs if a in ("-e", "--env")]
        assert "A=1" in envs
        assert not any("NODE_SECRET" in e or "do-not-pass" in e for e in envs)
        assert "--env-host" not in opts
    for bad in ({"A=B": "1"}, {"": "1"}, {"FOO*": "x"}):
        with pytest.raises(FedgenError, match="env"):
            runtime.launch(executor | {"env": bad}, layout, task_id="t1")


@pytest.mark.slow
@pytest.mark.podman
def test_podman__real_task_runs_confined(site, start_node, podman_image, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDGEN_NODE_SECRET", "node-secret-value-42")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    tokens = secrets / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"steward": TOKEN}))
    (site.data / "cohort.txt").write_text("sample data\n")
    node = start_node(
        site.state,
        config=podman_config(
            site, allowed_images=[podman_image], token_file=str(tokens), caller_logs=["steward"]
        ),
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    probe = "; ".join(
        [
            "id -u",
            "id -g",
            "ls /sys/class/net | tr '\\n' ' '; echo",
            "touch /root-probe 2>/dev/null && echo root-writable || echo root-read-only",
            f"test -e {site.state} && echo state-visible || echo state-hidden",
            f"test -e {tokens} && echo token-visible || echo token-hidden",
            f"test -e {site.data} && echo data-root-visible || echo data-root-hidden",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '",
            "cat /fedgen/work/in/cohort.txt",
            "(echo x >> /fedgen/work/in/cohort.txt) 2>/dev/null && echo input-writable"
            " || echo input-read-only",
            "env | sort > /fedgen/work/env.txt",
            "echo written > /tmp/t && cat /tmp/t",
            # Limits: resources.ram_gb and the node's pids limit (cgroup v1 or v2 layout).
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
            " || cat /sys/fs/cgroup/memory.max",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ]
    )
    task = {
        "name": "confined",
        "inputs": [
            {"path": "/fedgen/work/in/cohort.txt", "url": (site.data / "cohort.txt").as_uri()}
        ],
        "outputs": [
            {"path": "/fedgen/work/report.txt", "url": (site.work / "report.txt").as_uri()},
            {"path": "/fedgen/work/env.txt", "url": (site.work / "env.txt").as_uri()},
        ],
        "executors": [
            {
                "image": podman_image,
                "command": ["sh", "-c", probe],
                "workdir": "/fedgen/work",
                "stdout": "/fedgen/work/report.txt",
                "env": {"GREETING": "hello"},
            }
        ],
        "resources": {"cpu_cores": 1, "ram_gb": 0.5},
    }
    resp = httpx.post(f"{node.url}/tasks", json=task, headers=headers)
    assert resp.status_code == 200, resp.text
    doc = wait_task(node.url, resp.json()["id"], headers=headers, timeout=120)
    assert doc["state"] == "COMPLETE", (doc, node.log_tail())
    report = (site.area("steward") / "report.txt").read_text().splitlines()
    assert report[0] != "0" and report[0] == "65534", report
    assert report[1] == "65534"
    assert report[2].split() == ["lo"]  # no network but loopback
    assert report[3:7] == ["root-read-only", "state-hidden", "token-hidden", "data-root-hidden"]
    assert report[7:9] == ["CapEff: 0000000000000000", "NoNewPrivs: 1"]
    assert report[9:12] == ["sample data", "input-read-only", "written"]
    assert 0.49e9 <= int(report[12]) <= 0.5e9  # ram_gb 0.5
    assert report[13] == "1024"
    assert doc["logs"][0]["logs"][0]["stderr"] == ""  # no engine noise in the task's log
    env = (site.area("steward") / "env.txt").read_text()
    assert "GREETING=hello" in env
    assert "node-secret-value-42" not in env and "FEDGEN_NODE_SECRET" not in env
    assert doc["logs"][0]["metadata"]["runtime"] == "podman"
    # The container is gone once the task ended.
    ps = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"fedgen-{doc['id']}" not in ps.stdout


@pytest.mark.slow
@pytest.mark.podman
def test_podman__allow_list_pins_the_digest(site, start_node, podman_image):
    name, digest = podman_image.split("@")
    node = start_node(site.state, config=podman_config(site, allowed_images=[podman_image]))
    other = "sha256:" + ("0" if digest[7] != "0" else "1") * 64
    for image in (f"{name}:bookworm", f"{name}@{other}", f"{name}x@{digest}", name):
        task = {"executors": [{"image": image, "command": ["true"]}]}
        resp = httpx.post(f"{node.url}/tasks", json=task)
        assert resp.status_code == 400, (image, resp.text)
        assert "allow-list" in resp.json()["message"]
    task = {"executors": [{"image": podman_image, "command": ["sh", "-c", "echo pinned"]}]}
    resp = httpx.post(f"{node.url}/tasks", json=task)
    assert resp.status_code == 200, resp.text
    doc = wait_task(node.url, resp.json()["id"], timeout=120)
    assert doc["state"] == "COMPLETE", (doc, node.log_tail())
    assert doc["logs"][0]["logs"][0]["stdout"] == "pinned\n"


@pytest.mark.slow
@pytest.mark.podman
def test_podman__cancel_kills_and_removes_the_container(site, start_node, podman_image):
    node = start_node(site.state, config=podman_config(site, allowed_images=[podman_image]))
    task = {"executors": [{"image": podman_image, "command": ["sleep", "300"]}]}
    task_id = httpx.post(f"{node.url}/tasks", json=task).json()["id"]
    name = f"fedgen-{task_id}"

    def running() -> bool:
        out = subprocess.run(
            ["podman", "ps", "--format", "{{.Names}}"],
            env=podman_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return name in out.split()

    deadline = time.monotonic() + 60
    while not running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running()
    httpx.post(f"{node.url}/tasks/{task_id}:cancel")
    doc = wait_task(node.url, task_id, timeout=60)
    assert doc["state"] == "CANCELED"
    ps = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert name not in ps.stdout.split()


def test_image_reference__grammar_and_digest_pinned_allow_list():
    digest = "sha256:" + "ab" * 32
    for image in (
        "alpine",
        "ubuntu:22.04",
        "fedgen/tools:0.1",
        "quay.io/biocontainers/plink2:2.00a5.10--h4ac6f70_0",
        "ghcr.io/snakemake-fedgen/fedgen-tools:0.1.0",
        "localhost:5000/a/b_c__d-e:Tag_1",
        f"localhost/fedgen-tools@{digest}",
        f"localhost/fedgen-tools:bookworm@{digest}",
        "[::1]:5000/x",
    ):
        assert str(parse_image(image)) == image
    for image in ("-x", "x y", "x:", "x@sha256:12", "x/Y", "x/", "/x", "x:-tag", "x" * 256):
        with pytest.raises(FedgenError, match="image"):
            parse_image(image)
    pin = [f"localhost/fedgen-tools@{digest}"]
    assert image_allowed(parse_image(f"localhost/fedgen-tools@{digest}"), pin)
    assert image_allowed(parse_image(f"localhost/fedgen-tools:bookworm@{digest}"), pin)
    for image in (
        "localhost/fedgen-tools",
        "localhost/fedgen-tools:bookworm",
        "localhost/fedgen-tools@sha256:" + "cd" * 32,
        f"localhost/fedgen-tools2@{digest}",
        f"evil/fedgen-tools@{digest}",
    ):
        assert not image_allowed(parse_image(image), pin), image
    # A pattern without a digest keeps the fnmatch semantics of bwrap/host sites.
    assert image_allowed(parse_image("fedgen/tools:0.1"), ["fedgen/tools:*"])
    assert not image_allowed(parse_image("fedgen/other:0.1"), ["fedgen/tools:*"])
    assert pinned(pin[0]) and not pinned("fedgen/tools:*")


@pytest.mark.slow
@pytest.mark.podman
def test_podman__container_that_survived_a_node_crash_is_removed(site, start_node, podman_image):
    node = start_node(site.state, config=podman_config(site, allowed_images=[podman_image]))
    task = {"executors": [{"image": podman_image, "command": ["sleep", "300"]}]}
    task_id = httpx.post(f"{node.url}/tasks", json=task).json()["id"]
    name = f"fedgen-{task_id}"

    def names(*flags: str) -> list[str]:
        out = subprocess.run(
            ["podman", "ps", *flags, "--format", "{{.Names}}"],
            env=podman_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()

    deadline = time.monotonic() + 60
    while name not in names() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert name in names()
    node.kill()  # SIGKILL the node's process group: the engine keeps the container
    assert name in names()
    node.start()
    doc = wait_task(node.url, task_id, timeout=60)
    assert doc["state"] == "SYSTEM_ERROR"
    assert name not in names("-a")
