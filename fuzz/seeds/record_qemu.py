#!/usr/bin/env python3
"""Records the raw bytes a real QEMU sends on QMP, for the framer's seeds.

Starts `qemu-system-x86_64 -machine none` with two monitors, one compact
and one `pretty=on`, runs a few exchanges on each (the greeting, replies,
errors, events from stop/cont/system_reset, a reply with a large return)
and writes every exchange, byte for byte, to OUT_DIR/<monitor>-<name>.bin.
Nothing is parsed or re-encoded: the files are what came off the socket.

    python3 fuzz/seeds/record_qemu.py /tmp/qmp-recording
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

# (name, bytes to send). The replies come back in the same order; a pause
# after each lets events that follow the reply (STOP, RESUME) arrive too.
EXCHANGES = [
    ("capabilities", b'{"execute": "qmp_capabilities"}\n'),
    ("query-status", b'{"execute": "query-status", "id": 1}\n'),
    ("query-version", b'{"execute": "query-version", "id": "v"}\n'),
    ("stop", b'{"execute": "stop", "id": 2}\n'),
    ("cont", b'{"execute": "cont", "id": 3}\n'),
    ("system_reset", b'{"execute": "system_reset", "id": 4}\n'),
    ("unknown-command", b'{"execute": "query-statu", "id": 5}\n'),
    ("bad-argument", b'{"execute": "query-status", "arguments": {"x": 1}, "id": 6}\n'),
    ("bad-json", b'{"execute": "query-status" "id": 7}\n'),
    # A reply whose strings hold escapes, CR LF and non-ASCII text.
    (
        "hmp-text",
        b'{"execute": "human-monitor-command", "arguments": {"command-line": "info \\u00e9t\\u00e9"}, "id": {"a": ["}", "\\""]}}\n',
    ),
    ("hmp-info-version", b'{"execute": "human-monitor-command", "arguments": {"command-line": "info version"}, "id": 8}\n'),
    ("qom-list", b'{"execute": "qom-list", "arguments": {"path": "/machine"}, "id": 9}\n'),
    ("query-commands", b'{"execute": "query-commands", "id": 10}\n'),
    ("query-qmp-schema", b'{"execute": "query-qmp-schema", "id": 11}\n'),
]


def connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def read_quiet(sock, quiet=0.3):
    """Everything that arrives until the socket has been quiet for `quiet` s."""
    sock.settimeout(quiet)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data
        except ConnectionResetError:  # QEMU quit with our bytes unread
            return data
        if not chunk:
            return data
        data += chunk


def record(path, prefix, out_dir):
    sock = connect(path, time.time() + 10)
    greeting = read_quiet(sock)
    exchanges = [("greeting", greeting)]
    for name, message in EXCHANGES:
        sock.sendall(message)
        exchanges.append((name, read_quiet(sock, 0.5)))
    sock.close()
    for name, data in exchanges:
        with open(os.path.join(out_dir, f"{prefix}-{name}.bin"), "wb") as f:
            f.write(data)
        print(f"{prefix}-{name}: {len(data)} bytes")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="qmp-record-")
    compact = os.path.join(work, "compact.sock")
    pretty = os.path.join(work, "pretty.sock")
    qemu = subprocess.Popen(
        [
            "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
            "-qmp", f"unix:{compact},server=on,wait=off",
            "-chardev", f"socket,id=pretty,path={pretty},server=on,wait=off",
            "-mon", "chardev=pretty,mode=control,pretty=on",
        ]
    )
    try:
        record(compact, "compact", out_dir)
        record(pretty, "pretty", out_dir)
        # quit: the reply, then the SHUTDOWN event, then the end of the stream.
        sock = connect(compact, time.time() + 10)
        data = read_quiet(sock)
        sock.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n')
        data += read_quiet(sock, 1.0)
        with open(os.path.join(out_dir, "compact-quit.bin"), "wb") as f:
            f.write(data)
        print(f"compact-quit: {len(data)} bytes")
    finally:
        if qemu.poll() is None:
            qemu.terminate()
            qemu.wait(timeout=10)


if __name__ == "__main__":
    main()
