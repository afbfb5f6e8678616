"""The TypeScript client (clients/js): strict types, generated files current, and its
Node test suites (``node --test``) against real servers started here."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LIVE_ARGS
from tests.support.browser import PageWatch, chromium
from tests.support.redisserver import redis_server
from tests.support.server import ROOT, ServerProcess, free_port, run_server

JS = ROOT / "clients" / "js"
TSC = JS / "node_modules" / ".bin" / "tsc"
ESBUILD = JS / "node_modules" / ".bin" / "esbuild"
NODE_TIMEOUT = 300.0


def _run(
    cmd: list[str],
    *,
    cwd: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group, killing the group if it overruns."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        out, _ = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{cmd} did not finish within {timeout}s:\n{out}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


@pytest.fixture(scope="module")
def js_build() -> Path:
    """The SDK and its tests compiled by tsc (strict) into clients/js/build."""
    assert TSC.exists(), "run `make test` (npm ci in clients/js)"
    result = _run([str(TSC), "-p", "tsconfig.json"], cwd=JS, timeout=180)
    assert result.returncode == 0, result.stdout
    return JS / "build" / "test"


def _node_test(test_file: Path, env: dict[str, str]) -> str:
    node_env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    result = _run(
        ["node", "--test", str(test_file)],
        cwd=JS,
        timeout=NODE_TIMEOUT,
        env=node_env | env,
    )
    assert result.returncode == 0, result.stdout
    assert "# fail 0" in result.stdout, result.stdout
    assert "# pass 0" not in result.stdout, result.stdout
    return result.stdout


def test_typescript_typechecks_in_strict_mode() -> None:
    """tsc --noEmit passes for the SDK (browser and Node), its tests and the dashboard."""
    config = json.loads(
        "\n".join(
            line
            for line in (JS / "tsconfig.json").read_text().splitlines()
            if not line.lstrip().startswith("//")
        )
    )
    assert config["compilerOptions"]["strict"] is True
    for project in ("tsconfig.json", "tsconfig.build.json", "dashboard/tsconfig.json"):
        result = _run([str(TSC), "--noEmit", "-p", project], cwd=JS, timeout=180)
        assert result.returncode == 0, f"{project}:\n{result.stdout}"


def _contract_json() -> str:
    result = _run([sys.executable, "scripts/js_contract.py"], cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout
    return result.stdout


def _check_generated(contract: str) -> subprocess.CompletedProcess[str]:
    return _run(
        ["node", "scripts/generate.mjs", "--check"],
        cwd=JS,
        timeout=120,
        input=contract,
    )


def test_generated_types_and_close_codes_are_current() -> None:
    """clients/js/src/generated matches what the server's contract and schemas generate
    (`make js-generate`); a changed close code or schema makes the check fail."""
    contract = _contract_json()
    result = _check_generated(contract)
    assert result.returncode == 0, result.stdout
    changed = json.loads(contract)
    changed["closeCodes"][0]["reason"] += " (changed)"
    changed["messageSchemas"]["metrics"]["properties"]["tps"]["description"] = "changed"
    stale = _check_generated(json.dumps(changed))
    assert stale.returncode == 1
    assert "contract.ts" in stale.stdout
    assert "messages.ts" in stale.stdout


def test_js_client_logic_without_a_socket(js_build: Path) -> None:
    """Back-off, Retry-After, token expiry, and a subscription's bookkeeping: duplicates
    dropped, gaps typed and announced before the next message."""
    _node_test(js_build / "units.test.js", {})


def test_js_client_connection_logic_on_scripted_sockets(js_build: Path) -> None:
    """The client on scripted sockets and mock timers: an id used again after close(), an
    unreadable frame (close, resume), history_unavailable (ask again), a refresh under way
    at close()."""
    _node_test(js_build / "connection.test.js", {})


def test_js_client_on_a_live_server(js_build: Path, tmp_path: Path) -> None:
    """Filters, several subscriptions on one /ws, replay, snapshot, since, errors, gaps."""
    with run_server(
        "--no-simulate", "--metrics-interval", "0.2", "--log-level", "INFO", tmp_path=tmp_path
    ) as server:
        _node_test(js_build / "client.test.js", {"STREAM_URL": server.http})


def test_js_client_honours_retry_after(js_build: Path, tmp_path: Path) -> None:
    """A full server's 503 + Retry-After delays the client's next attempt (Node shows it)."""
    with run_server(
        "--no-simulate",
        "--max-connections",
        "1",
        "--retry-after",
        "1",
        "--log-level",
        "INFO",
        tmp_path=tmp_path,
    ) as server:
        _node_test(js_build / "limits.test.js", {"STREAM_URL": server.http})


def test_js_client_tokens(js_build: Path, tmp_path: Path) -> None:
    """Token refresh on the open connection; 4001 for an expired fixed token; 401 stops."""
    secret = "s" * 40
    with run_server(
        "--no-simulate",
        "--metrics-interval",
        "0.2",
        "--auth-expiry-grace",
        "0",
        "--log-level",
        "INFO",
        tmp_path=tmp_path,
        env={"AURIGRAPH_JWT_SECRET": secret},
    ) as server:
        _node_test(
            js_build / "auth.test.js", {"STREAM_URL": server.http, "STREAM_JWT_SECRET": secret}
        )


def _serve_spec(tmp_path: Path, *extra: str) -> dict[str, object]:
    """How the resume test starts (and restarts, on the same port) its own server."""
    port = free_port()
    return {
        "argv": [
            sys.executable,
            "-m",
            "aurigraph_stream",
            "serve",
            *extra,
            "--port",
            str(port),
            "--no-simulate",
            "--history-size",
            "5000",  # the 2,000 events stay resumable
            "--max-buffered-bytes",
            "65536",
            "--ping-interval",
            "1",
            "--ping-timeout",
            "3",
            "--close-timeout",
            "30",  # a stalled client still reads the 4008/4009 close after its backlog
            "--log-level",
            "INFO",
        ],
        "port": port,
        "log": str(tmp_path / "server.log"),
    }


def test_js_client_resumes_across_five_drops(js_build: Path, tmp_path: Path) -> None:
    """2,000 events while the connection is cut twice, closed with 4009 and 4008, and the
    server restarted: every seq once, one gap (epoch_changed) at the restart."""
    out = _node_test(
        js_build / "resume.test.js", {"STREAM_SERVE": json.dumps(_serve_spec(tmp_path))}
    )
    assert "messages in two epochs" in out


def test_js_client_resumes_across_a_cluster_node_restart(js_build: Path, tmp_path: Path) -> None:
    """The same drops against a node on a Redis broker: the restarted node still has the
    history, so every seq arrives exactly once, in one epoch, with no gap."""
    with redis_server(tmp_path) as redis:
        spec = _serve_spec(tmp_path, "--broker-url", redis.url)
        out = _node_test(
            js_build / "resume.test.js",
            {"STREAM_SERVE": json.dumps(spec), "STREAM_HISTORY_SURVIVES": "1"},
        )
    assert "messages in one epoch" in out


def test_js_client_in_chromium(tmp_path: Path) -> None:
    """The SDK on a browser's own WebSocket (Chromium): a filtered subscription on /ws
    gets exactly the matching transactions published over HTTP, then closes cleanly."""
    bundle = tmp_path / "sdk-check.js"
    built = _run(
        [
            str(ESBUILD),
            "browser/sdk-check.ts",
            "--bundle",
            "--format=esm",
            f"--outfile={bundle}",
        ],
        cwd=JS,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout
    with (
        run_server("--no-simulate", "--log-level", "INFO", tmp_path=tmp_path) as server,
        chromium() as browser,
    ):
        page = browser.new_page()
        watch = PageWatch(page, server.port)
        # A document of the server's own origin, loaded over loopback (Chromium lets such
        # a page open loopback WebSockets) and without a CSP: a JSON answer.
        page.goto(f"{server.http}/api/v11/streams")
        page.add_script_tag(content=bundle.read_text(), type="module")
        page.wait_for_selector("body[data-result]", state="attached", timeout=20_000)
        result = json.loads(page.locator("body").get_attribute("data-result") or "{}")
        page.close()
    assert "error" not in result, result
    a = "0x" + "a7" * 20
    published = result["published"]
    assert result["received"] == [[published[0], a], [published[2], a]]
    assert result["events"][:3] == ["connecting", "open", "subscribed"]
    assert result["stateWhileOpen"] == "open"
    assert result["stateAfterClose"] == "closed"
    watch.check()


# -- docs/clients.md -------------------------------------------------------------
DOC = ROOT / "docs" / "clients.md"
EXAMPLE = re.compile(r"^```ts example( jwt| browser)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _typescript_section() -> str:
    text = DOC.read_text()
    start = text.index("## TypeScript")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _ts_blocks() -> int:
    return len(re.findall(r"^```ts", _typescript_section(), re.MULTILINE))


def _doc_examples() -> list[tuple[str, str]]:
    """(kind, code) of each ```ts example block of the TypeScript section: node, jwt (a
    server that checks tokens: ```ts example jwt) or browser (```ts example browser)."""
    section = _typescript_section()
    return [((m.group(1) or " node").strip(), m.group(2)) for m in EXAMPLE.finditer(section)]


def _browser_example(server: ServerProcess, bundle: Path) -> list[str]:
    """Run a bundled example on a page of the server's origin; returns what it logged."""
    with chromium() as browser:
        page = browser.new_page()
        watch = PageWatch(page, server.port)
        logs: list[str] = []
        page.on("console", lambda m: logs.append(m.text) if m.type == "log" else None)
        page.goto(f"{server.http}/api/v11/streams")
        page.add_script_tag(content=bundle.read_text(), type="module")
        deadline = time.monotonic() + 30
        for _ in range(600):
            if len(logs) >= 3 or watch.errors or time.monotonic() > deadline:
                break
            page.wait_for_timeout(50)
        page.close()
    watch.check()
    return logs


def test_every_typescript_example_in_the_clients_doc_runs(js_build: Path, tmp_path: Path) -> None:
    """Each TypeScript example of docs/clients.md type-checks (strict) and runs to its end
    against a real server: in Node, or in Chromium for the browser one."""
    examples = _doc_examples()
    assert len(examples) >= 5
    assert {kind for kind, _ in examples} == {"node", "jwt", "browser"}
    assert _ts_blocks() == len(examples)  # no ts block left out of the run
    dist = _run([str(TSC), "-p", "tsconfig.build.json"], cwd=JS, timeout=180)
    assert dist.returncode == 0, dist.stdout  # the package the examples import by name
    work = JS / "build" / "doc-examples"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    secret = "d" * 40
    for sub in ("open", "auth"):
        (tmp_path / sub).mkdir()
    with (
        run_server(*LIVE_ARGS, tmp_path=tmp_path / "open") as live,
        run_server(
            "--no-simulate",
            "--metrics-interval",
            "0.2",
            "--log-level",
            "INFO",
            tmp_path=tmp_path / "auth",
            env={"AURIGRAPH_JWT_SECRET": secret},
        ) as auth,
    ):
        servers = {"node": live, "jwt": auth, "browser": live}
        for i, (kind, code) in enumerate(examples):
            host = f"127.0.0.1:{servers[kind].port}"
            name = f"browser_{i}" if kind == "browser" else f"example_{i}"
            (work / f"{name}.ts").write_text(code.replace("127.0.0.1:9003", host))
        base = {"extends": "../../tsconfig.json", "compilerOptions": {"rootDir": "."}}
        node_config = base | {
            "compilerOptions": {"rootDir": ".", "outDir": "out"},
            "include": ["example_*.ts"],
        }
        browser_config = base | {
            "compilerOptions": {"lib": ["ES2022", "DOM"], "types": [], "noEmit": True},
            "include": ["browser_*.ts"],
            "exclude": [],  # the base's outDir (build/) holds this folder
        }
        (work / "tsconfig.json").write_text(json.dumps(node_config))
        (work / "tsconfig.browser.json").write_text(json.dumps(browser_config))
        for project in ("tsconfig.json", "tsconfig.browser.json"):
            checked = _run([str(TSC), "-p", project], cwd=work, timeout=180)
            assert checked.returncode == 0, f"{project}:\n{checked.stdout}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for i, (kind, code) in enumerate(examples):
            if kind == "browser":
                bundle = work / f"browser_{i}.js"
                built = _run(
                    [
                        str(ESBUILD),
                        f"browser_{i}.ts",
                        "--bundle",
                        "--format=esm",
                        f"--outfile={bundle}",
                    ],
                    cwd=work,
                    timeout=120,
                )
                assert built.returncode == 0, built.stdout
                logs = _browser_example(live, bundle)
                assert len(logs) >= 3, (code, logs)
                continue
            run_env = env | ({"AURIGRAPH_JWT_SECRET": secret} if kind == "jwt" else {})
            ran = _run(["node", f"out/example_{i}.js"], cwd=work, timeout=60, env=run_env)
            assert ran.returncode == 0, f"{code}\n---\n{ran.stdout}"
            assert ran.stdout.strip(), code
