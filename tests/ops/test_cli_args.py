"""The command line reads as the README writes it, says what every part does, and pipes."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecard.cli import build_parser, parse_args


def test_call_takes_its_body_before_or_after_its_options() -> None:
    after = parse_args(["call", "POST", "http://h/v1/codes", "--key", "phone.jwk.json", "--keyid", "key_1", "{}"])
    before = parse_args(["call", "POST", "http://h/v1/codes", "{}", "--key", "phone.jwk.json", "--keyid", "key_1"])
    for args in (after, before):
        assert (args.method, args.url, args.body, args.key, args.keyid) == (
            "POST",
            "http://h/v1/codes",
            "{}",
            "phone.jwk.json",
            "key_1",
        )


def test_stray_arguments_are_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["call", "POST", "http://h/v1/codes", "--key", "k.json", "{}", "extra"])
    with pytest.raises(SystemExit):
        parse_args(["keys", "list", "surplus"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_kid_that_begins_with_a_dash_is_taken_after_a_double_dash() -> None:
    assert parse_args(["keys", "revoke", "--", "-AbC_dEf0g"]).kid == "-AbC_dEf0g"


COMMANDS = {
    "serve",
    "migrate",
    "operator",
    "catalog",
    "keys",
    "keygen",
    "call",
    "partners",
    "standin",
    "ledger",
    "payments",
    "portals",
    "audit",
    "partitions",
}


def _ecard(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ECARD_")}
    return subprocess.run(
        [sys.executable, "-m", "ecard.cli", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def _parsers(parser: argparse.ArgumentParser, path: str = "ecard") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_ecard_help_lists_every_command_with_what_it_does() -> None:
    done = _ecard("--help")
    assert done.returncode == 0
    text = done.stdout.decode()
    described = set(re.findall(r"^    ([a-z-]+) {2,}\S", text, re.MULTILINE))
    assert described == COMMANDS, text


def test_every_command_and_option_says_what_it_is_for() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{path} {action.dest}")
    assert missing == []


def test_defaults_are_shown_in_the_help() -> None:
    serve = _ecard("serve", "--help").stdout.decode()
    assert "(default: 8000)" in serve
    assert "(default: 127.0.0.1)" in serve
    call = _ecard("call", "--help").stdout.decode()
    assert "(default: application/json)" in call
    assert "(default: None)" not in call


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers 201 with what it was sent: the body and the signature headers."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = json.dumps(
            {
                "body": body.decode(),
                "signature_input": self.headers.get("Signature-Input"),
                "content_digest": self.headers.get("Content-Digest"),
            }
        ).encode()
        status = 201 if body != b'{"refuse":true}' else 409
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "yes")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/codes"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "client.jwk.json"
    assert _ecard("keygen", "--out", str(path)).returncode == 0
    return path


def test_call_prints_the_body_on_stdout_and_the_status_on_stderr(echo: str, key_file: Path) -> None:
    done = _ecard("call", "POST", echo, '{"a":"$x"}', "--key", str(key_file), "--keyid", "key_1")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # nothing but the body: it pipes
    assert answer["body"] == '{"a":"$x"}'
    assert 'keyid="key_1"' in answer["signature_input"]
    assert answer["content_digest"].startswith("sha-256=:")
    assert done.stderr.decode().strip() == "HTTP/1.1 201 Created"


def test_call_reads_the_body_from_a_file_or_stdin(echo: str, key_file: Path, tmp_path: Path) -> None:
    body = '{"code":"EC1:6BF$0:A*V","item_code":"wl-011"}'
    (tmp_path / "body.json").write_text(body)
    from_file = _ecard("call", "POST", echo, "@body.json", "--key", str(key_file), "--keyid", "k", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["body"] == body
    from_stdin = _ecard("call", "POST", echo, "--key", str(key_file), "--keyid", "k", "-", stdin=body.encode())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["body"] == body
    missing = _ecard("call", "POST", echo, "@absent.json", "--key", str(key_file), "--keyid", "k", cwd=tmp_path)
    assert missing.returncode == 2
    assert "absent.json" in missing.stderr.decode()


def test_call_include_prints_the_status_line_and_headers_before_the_body(echo: str, key_file: Path) -> None:
    done = _ecard("call", "-i", "POST", echo, "{}", "--key", str(key_file), "--keyid", "k")
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 201 Created"
    assert "x-echo: yes" in lines[1:]
    assert json.loads(body)["body"] == "{}"


def test_call_exits_1_on_a_refusal_with_the_refusal_on_stdout(echo: str, key_file: Path) -> None:
    done = _ecard("call", "POST", echo, '{"refuse":true}', "--key", str(key_file), "--keyid", "k")
    assert done.returncode == 1
    assert json.loads(done.stdout)["body"] == '{"refuse":true}'
    assert done.stderr.decode().strip() == "HTTP/1.1 409 Conflict"
