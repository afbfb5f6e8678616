"""Every example of docs/clients.md runs, as written, against a real server.

Blocks fenced as ```python example or ```bash example are run (python ... jwt
against a server that checks tokens); only the address changes, from
127.0.0.1:9003 to the test server's port. Each must exit 0 within a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LIVE_ARGS
from tests.support.server import ROOT, ServerProcess, run_server

DOC = (ROOT / "docs" / "clients.md").read_text()
EXAMPLE = re.compile(r"^```(python|bash) example( jwt)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXAMPLES = [(m[1], bool(m[2]), m[3]) for m in EXAMPLE.finditer(DOC)]
SECRET = "a-docs-test-secret-that-is-long-enough-for-hs256"
BIN = str(Path(sys.executable).parent)


def test_the_document_has_its_examples_and_the_typescript_section() -> None:
    assert len([e for e in EXAMPLES if e[0] == "python"]) >= 7
    assert any(e[0] == "bash" for e in EXAMPLES)
    assert any(jwt for _, jwt, _ in EXAMPLES)
    assert "\n## TypeScript SDK\n" in DOC


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(
        *LIVE_ARGS,
        tmp_path=tmp_path_factory.mktemp("docs-jwt"),
        env={"AURIGRAPH_JWT_SECRET": SECRET},
    ) as server:
        yield server


@pytest.mark.parametrize(
    ("kind", "jwt", "code"),
    EXAMPLES,
    ids=[f"{i}-{kind}{'-jwt' if jwt else ''}" for i, (kind, jwt, _) in enumerate(EXAMPLES)],
)
def test_example_runs(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, jwt: bool, code: str
) -> None:
    server: ServerProcess = request.getfixturevalue("jwt_server" if jwt else "live_server")
    code = code.replace("127.0.0.1:9003", f"127.0.0.1:{server.port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    if jwt:
        env["AURIGRAPH_JWT_SECRET"] = SECRET
    script = tmp_path / ("example.py" if kind == "python" else "example.sh")
    script.write_text(code)
    runner = [sys.executable] if kind == "python" else ["bash", "-euo", "pipefail"]
    done = subprocess.run(
        [*runner, str(script)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.strip(), done.stderr
