"""`aurigraph-stream listen`, run as a real process against a real server, from either package."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.sync.client import connect

from tests.support.server import ROOT, ServerProcess, run_server
from tests.support.streamtools import address, open_server, publish, recv_json, tx
from tests.support.subproc import LineReader, stop

A, B = address(0xA1), address(0xB2)
VENV_COMMAND = str(Path(sys.executable).parent / "aurigraph-stream")
# The two entry points: the server package's and the client package's.
ENTRY_POINTS = {
    "server": "from aurigraph_stream.cli import main",
    "client": "from aurigraph_stream_client.cli import main",
}
# Importing None raises ImportError: the package is "not installed" for that process.
WITHOUT = "import sys; sys.modules[{name!r}] = None; "


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with open_server(tmp_path_factory.mktemp("cli"), "--metrics-interval", "0.2") as s:
        yield s


def command(entry: str, without: str | None = None) -> list[str]:
    code = (WITHOUT.format(name=without) if without else "") + ENTRY_POINTS[entry]
    return [sys.executable, "-c", f"{code}; import sys; sys.exit(main(sys.argv[1:]))"]


def run(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("entry", ["venv", "server", "client"])
def test_listen_json_count_exits_after_n_messages(server: ServerProcess, entry: str) -> None:
    """`listen metrics --json --count 3` prints the connection and three metrics messages,
    one JSON object per line, and exits 0: the same from every entry point."""
    base = [VENV_COMMAND] if entry == "venv" else command(entry)
    done = run([*base, "listen", "metrics", "--url", server.ws(""), "--json", "--count", "3"])
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert lines[0] == {"type": "connected", "url": server.ws("/ws"), "attempt": 0}
    messages = lines[1:]
    assert len(messages) == 3
    assert all("type" not in m and {"tps", "cpu", "seq"} <= set(m) for m in messages)
    assert [m["seq"] for m in messages] == list(range(messages[0]["seq"], messages[0]["seq"] + 3))


def transactions_position(server: ServerProcess) -> str:
    """The transactions stream's position now, ``SEQ:EPOCH`` (from a subscribed frame)."""
    with connect(server.ws("/ws/transactions?replay=0")) as ws:
        subscribed = recv_json(ws, 10)
    assert subscribed["type"] == "subscribed"
    position = subscribed["position"]
    return f"{position['seq']}:{position['epoch']}"


def test_count_counts_messages_that_pass_the_filter(server: ServerProcess) -> None:
    """--address A --count 2 waits for two transactions of A, skipping B's. It starts from
    the position before the first publish, so whether its subscription lands before or
    after them, it gets exactly what was published since."""
    since = transactions_position(server)
    proc = subprocess.Popen(
        [
            VENV_COMMAND,
            "listen",
            "transactions",
            "--url",
            server.ws(""),
            "--address",
            A,
            "--since",
            since,
            "--count",
            "2",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    try:
        reader.wait_for(lambda line: '"connected"' in line, 15)
        sent = publish(server, "transactions", [tx(900, B, B, "1")])  # not A's
        sent += publish(server, "transactions", [tx(901, A, B, "2"), tx(902, B, A, "3")])
        assert proc.wait(15) == 0
        reader.until_end(10)
    finally:
        stop(proc, signal.SIGTERM)
        reader.close()
    messages = [orjson.loads(line) for line in reader.lines[1:]]
    assert [m for m in messages if "type" not in m] == sent[1:]
    assert all(m["seq"] > int(since.split(":")[0]) for m in sent)


def test_a_gap_is_a_typed_json_line(server: ServerProcess) -> None:
    """--since with an epoch the server never had: a gap line before any message."""
    done = run(
        [
            VENV_COMMAND,
            "listen",
            "metrics",
            "--url",
            server.ws(""),
            "--since",
            "5:gone",
            "--json",
            "--count",
            "1",
        ]
    )
    assert done.returncode == 0, done.stderr
    connected, gap, message = json_lines(done.stdout)
    assert connected["type"] == "connected"
    assert gap["type"] == "gap"
    assert (gap["stream"], gap["lastSeq"], gap["oldEpoch"], gap["missed"]) == (
        "metrics",
        5,
        "gone",
        None,
    )
    assert message["seq"] > gap["resumeSeq"]


def test_reconnects_are_shown_as_they_happen(tmp_path: Path) -> None:
    """The server stops: a disconnected line with its code and the delay, then, once it is
    back on its port, connected again (attempt 1) and messages."""
    port = 0
    with run_server("--no-simulate", "--metrics-interval", "0.2", tmp_path=tmp_path) as first:
        port = first.port
        proc = subprocess.Popen(
            [VENV_COMMAND, "listen", "metrics", "--url", first.ws(""), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        reader = LineReader(proc.stdout)
        try:
            reader.wait_for(lambda line: '"seq"' in line, 15)
            first.stop()
            line = reader.wait_for(lambda line: '"disconnected"' in line, 15)[-1]
            down = orjson.loads(line)
            assert down["code"] == 1001
            assert down["retryIn"] > 0
            with run_server(
                "--no-simulate", "--metrics-interval", "0.2", tmp_path=tmp_path, port=port
            ):
                reader.wait_for(lambda line: '"attempt"' in line and '"attempt":0' not in line, 30)
                reader.wait_for(lambda line: '"seq"' in line, 15)
        finally:
            stop(proc, signal.SIGTERM)
            reader.close()
    kinds = [orjson.loads(line).get("type") for line in reader.lines]
    assert "gap" in kinds  # the restarted server has a new epoch: announced, never silent


def test_the_default_view_is_a_live_table_for_metrics_and_a_feed_for_transactions(
    server: ServerProcess,
) -> None:
    done = run([VENV_COMMAND, "listen", "metrics", "--url", server.ws(""), "--count", "2"])
    assert done.returncode == 0, done.stderr
    for text in ("metrics", "connected", "tps", "cpu", "errorRate", "messages"):
        assert text in done.stdout
    publish(server, "transactions", [tx(i, A, B, "7") for i in range(3)])
    done = run(
        [
            VENV_COMMAND,
            "listen",
            "transactions",
            "--url",
            server.ws(""),
            "--replay",
            "2",
            "--count",
            "2",
        ]
    )
    assert done.returncode == 0, done.stderr
    feed = [line for line in done.stdout.splitlines() if line.startswith("#")]
    assert len(feed) == 2
    assert "status=PENDING" in done.stdout


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["listen", "metrics", "--address", A], "address is not a filter of metrics"),
        (["listen", "consensus", "--latest", "maybe"], "--latest must be true or false"),
        (["listen", "metrics", "--snapshot"], "metrics has no snapshot"),
        (["listen", "metrics", "--count", "0"], "--count must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], says: str) -> None:
    done = run([VENV_COMMAND, *argv])
    assert done.returncode == 2
    assert says in done.stderr


def test_a_refused_token_exits_1_with_the_reason(tmp_path: Path) -> None:
    secret = "a-cli-test-secret-that-is-long-enough-for-hs256"
    with run_server(tmp_path=tmp_path, env={"AURIGRAPH_JWT_SECRET": secret}) as s:
        done = run([VENV_COMMAND, "listen", "metrics", "--url", s.ws(""), "--token", "x.y.z"])
    assert done.returncode == 1
    assert "401 invalid_token" in done.stderr


def test_the_client_package_alone_listens_and_names_what_needs_the_server(
    server: ServerProcess,
) -> None:
    """Without the server package importable: listen works; serve and token say they need
    it; --help lists listen."""
    alone = command("client", without="aurigraph_stream")
    done = run([*alone, "listen", "metrics", "--url", server.ws(""), "--json", "--count", "1"])
    assert done.returncode == 0, done.stderr
    assert len(json_lines(done.stdout)) == 2
    for sub in ("serve", "token"):
        done = run([*alone, sub])
        assert done.returncode == 2
        assert "needs the server package" in done.stderr
        assert "pip install aurigraph-stream" in done.stderr
    done = run([*alone, "--help"])
    assert done.returncode == 0
    assert "listen" in done.stdout


def test_the_server_package_without_the_client_says_listen_needs_it() -> None:
    done = run([*command("server", without="aurigraph_stream_client"), "listen", "metrics"])
    assert done.returncode == 2
    assert "pip install aurigraph-stream-client" in done.stderr
    help_text = run([VENV_COMMAND, "--help"]).stdout
    assert all(word in help_text for word in ("serve", "token", "listen"))
