"""node.yaml checks: one clear message per mistake."""

from __future__ import annotations

import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.node.config import load_config


def test_load_config__reads_keys_and_flags_win(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(f"write_roots: [{work}]\negress_root: {work}/egress\ncpu_cores: 1\n")
    cfg = load_config(tmp_path / "state", config_file=cfg_file, overrides={"cpu_cores": 2})
    assert cfg.write_roots == [work.resolve()]
    assert cfg.egress_root == (work / "egress").resolve()
    assert cfg.cpu_cores == 2
    assert cfg.quarantine_dir == tmp_path / "state" / "quarantine"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("unknown_key: 1\n", "unknown key(s) unknown_key"),
        ("runtime: lxc\n", "runtime 'lxc'"),
        ("read_roots: [/does/not/exist]\n", "not an existing directory"),
        ("egress_root: {tmp}/egress\n", "must be inside one of the write_roots"),
        ("cpu_cores: 0\n", "cpu_cores must be >= 1"),
        ("host: 0.0.0.0\n", "without a token_file"),
        ("- a list\n", "expected a mapping"),
        ("airlock:\n  min_nn: 3\n", "unknown key(s) min_nn"),
    ],
)
def test_load_config__mistakes_give_one_clear_message(tmp_path, text, fragment):
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(text.format(tmp=tmp_path))
    with pytest.raises(ConfigError, match=r"node config .*node\.yaml") as err:
        load_config(tmp_path / "state", config_file=cfg_file)
    assert fragment in str(err.value)


def test_cli_flags__configure_the_node_without_a_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from snakemake_fedgen.node.process import free_port

    work = tmp_path / "work"
    (work / "egress").mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "node",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            "--write-roots",
            str(work),
            "--egress-root",
            str(work / "egress"),
            "--allowed-images",
            "fedgen/*",
            "x/y",
            "--runtime",
            "host",
            "--node-id",
            "flagged",
            *(["--task-user", "nobody"] if os.geteuid() == 0 else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        info = None
        deadline = time.monotonic() + 60
        while info is None and time.monotonic() < deadline:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/ga4gh/tes/v1/service-info").json()
            except httpx.HTTPError:
                time.sleep(0.1)
        assert info is not None
        assert info["fedgen"]["node_id"] == "flagged"
        assert info["fedgen"]["runtime"] == "host"
        assert info["fedgen"]["allowed_images"] == ["fedgen/*", "x/y"]
        assert info["fedgen"]["egress_root"] == (work / "egress").resolve().as_uri()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_config_model__every_key_is_a_flag_with_its_description_as_help(tmp_path):
    import argparse

    from snakemake_fedgen.cli import node as node_cli
    from snakemake_fedgen.node.config import CONFIG_KEYS, NodeConfig, config_overrides, flag_of

    parser = argparse.ArgumentParser()
    node_cli.configure(parser)
    flags = {a.dest: a for a in parser._actions}
    for key in CONFIG_KEYS:
        assert flag_of(key) in flags[key].option_strings, key
        assert flags[key].help.startswith(NodeConfig.model_fields[key].description), key
    work = tmp_path / "work"
    work.mkdir()
    given = ["--cpu-cores", "3", "--airlock", "{min_n: 100}", "--runtime", "host"]
    args = parser.parse_args(
        ["--state-dir", str(tmp_path / "state"), "--write-roots", str(work), *given]
    )
    overrides = config_overrides(args)
    assert overrides["cpu_cores"] == 3 and overrides["host"] is None
    cfg = load_config(tmp_path / "state", overrides=overrides)
    assert cfg.cpu_cores == 3 and cfg.airlock == {"min_n": 100} and cfg.runtime == "host"
    assert cfg.write_roots == [work.resolve()]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cpu_core: 2\n", "unknown key(s) cpu_core (did you mean cpu_cores?)"),
        ("port: eighty\n", "port must be an integer, got 'eighty'"),
        ("max_task_seconds: soon\n", "max_task_seconds must be a number, got 'soon'"),
        ("write_roots: 5\n", "write_roots must be a list of directories, got 5"),
        ("jwt: yes\n", "jwt must be a mapping, got True"),
    ],
)
def test_load_config__types_and_typos_name_the_key(tmp_path, text, fragment):
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(text)
    with pytest.raises(ConfigError, match=r"node config .*node\.yaml") as err:
        load_config(tmp_path / "state", config_file=cfg_file)
    assert fragment in str(err.value)
