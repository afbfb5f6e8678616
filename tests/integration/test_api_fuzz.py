"""Schemathesis against the running server's own /q/openapi: no 5xx, and no answer that
the document does not describe (status code, content type, headers, body schema).

The run goes through schemathesis' command line: its pytest plugin's lazy loader does
not work with the pytest this suite runs on, and the CLI is the interface an operator
would use against a deployed server anyway.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import run_server

# Bounded so the run takes well under a minute on two cores.
MAX_EXAMPLES = 20
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
)


def test_every_operation_answers_as_documented(tmp_path: Path) -> None:
    """Generated requests, valid and invalid, to every operation get documented answers."""
    with run_server("--no-simulate", "--log-level", "WARNING", tmp_path=tmp_path) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{server.http}/q/openapi",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                str(MAX_EXAMPLES),
                "--workers",
                "1",
                "--seed",
                "20251025",
                "--request-timeout",
                "10",
                "--generation-database",
                "none",
                "--no-color",
                # A GraphQL document is not what a JSON Schema generates: random strings
                # are refused as they should be (400), which the positive-data check
                # counts against. GraphQL gets generated documents in test_security_fuzz.
                "--exclude-path-regex",
                "^/graphql",
            ],
            cwd=tmp_path,  # schemathesis keeps its working files in the current directory
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        log = server.log()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    tested = next(line for line in report.splitlines() if "Tested:" in line)
    assert int(tested.split(":")[1]) >= 14, report  # every operation, ingest once per stream
    assert "Traceback" not in log, log
