"""docs/operations.md against a real server: its curl commands work, its metric names exist."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import httpx

from tests.support.opstools import scrape
from tests.support.server import ROOT, ServerProcess

DOC = ROOT / "docs" / "operations.md"
SPEC_COMMANDS = (
    "curl http://localhost:9003/q/health",
    "curl http://localhost:9003/api/v11/websocket/stats",
    'curl -H "Origin: https://dlt.aurigraph.io" \\\n'
    '     -H "Access-Control-Request-Method: GET" \\\n'
    '     -H "Access-Control-Request-Headers: Content-Type" \\\n'
    "     -X OPTIONS http://localhost:9003/ws/metrics",
)


def curl_commands(text: str) -> list[str]:
    """Every curl command in the document's bash blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("curl "):
                commands.append(command.strip())
    return commands


def test_the_documented_curl_commands_work(quiet_server: ServerProcess) -> None:
    """Each curl command of the doc (the spec's among them) succeeds against the server,
    with only the port changed."""
    text = DOC.read_text()
    for command in SPEC_COMMANDS:
        assert command in text
    commands = curl_commands(text)
    assert len(commands) >= 8
    curl = shutil.which("curl")
    assert curl is not None
    for command in commands:
        argv = shlex.split(command.replace("localhost:9003", f"127.0.0.1:{quiet_server.port}"))
        done = subprocess.run(
            [curl, "--fail", "-sS", *argv[1:]], capture_output=True, timeout=15, check=False
        )
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout, command


def test_every_documented_metric_is_exported_and_every_exported_one_documented(
    quiet_server: ServerProcess,
) -> None:
    """The metric names in the doc's tables are the ones /q/metrics serves."""
    documented = set(re.findall(r"`(aurigraph_[a-z_]+)`", DOC.read_text()))
    exposition = httpx.get(f"{quiet_server.http}/q/metrics", timeout=10).text
    exported = set(re.findall(r"^# TYPE (aurigraph_[a-z_]+) ", exposition, re.MULTILINE))
    assert documented == exported
    assert ("process_cpu_seconds_total", ()) in scrape(quiet_server)
