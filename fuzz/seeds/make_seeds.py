#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/ from the repo's own
examples and from a recording of a real QEMU.

    python3 fuzz/seeds/make_seeds.py                 # records a QEMU first
    python3 fuzz/seeds/make_seeds.py /tmp/recording  # record_qemu.py's output

line/    the grammar examples (grammar/GRAMMAR.md, grammar/commands.json),
         tests/qmp_shell/corpus.txt in groups, and a few edge cases
framer/  recorded QMP traffic behind the target's 2-byte header
schema/  a trimmed schema (the types one command needs), a NUL, a line
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:40].strip("-") or "x"


# --- line ---------------------------------------------------------------------


def grammar_examples():
    """Each example's input in GRAMMAR.md's ```examples block: the lines of
    an entry before its `=>`."""
    text = open(os.path.join(ROOT, "grammar", "GRAMMAR.md")).read()
    block = text.split("```examples\n", 1)[1].split("```", 1)[0]
    entries, current = [], []
    for line in block.split("\n"):
        if line.startswith("=> "):
            entries.append("\n".join(current))
            current = []
        elif line or current:
            current.append(line)
    return entries


def qmp_shell_entries():
    """tests/qmp_shell/corpus.txt without comments; a transaction block is
    one entry."""
    entries, block = [], None
    for line in open(os.path.join(ROOT, "tests", "qmp_shell", "corpus.txt")):
        line = line.rstrip("\n")
        if block is not None:
            block.append(line)
            if line.strip() == ")" or line.rstrip().endswith(" )"):
                entries.append("\n".join(block))
                block = None
        elif not line.strip() or line.startswith("#"):
            continue
        elif line.startswith("transaction(") and not line.rstrip().endswith(")"):
            block = [line]
        else:
            entries.append(line)
    return entries


# Lines that reach corners the examples do not: bytes that are not UTF-8,
# CR LF, continuations, Python literal forms, deep keys, odd whitespace.
EDGE_LINES = [
    b"device_add e1000,id=n\xff1\nstop\n",
    b"stop\r\ncont\r\n",
    b"device_add driver=e1000 \\\n  id=n1\n",
    b'{"execute":\n "qom-list", "arguments": {"path": "/machine"}\n}\n',
    b"qom-set path=/m property=p value=[0x1_0, 0o7, 0b1, 1e-5, -0, (1,), {'k': r'\\d' u'x' '''y'''}]",
    b"x a=['\\ud83d\\ude00', '\\x41\\101\\N', \"\"\"a\"b\"\"\"]",
    b"x " + b".".join([b"a"] * 32) + b"=1",
    b"x a={\"n\": -0, \"m\": 18446744073709551615, \"f\": 1e30}",
    b"transaction(\n  a x=1 ;; b\n\n  c )\n",
    b".wait STOP timeout=0.5 data.reason=host-qmp-quit\n.sleep 1e-3\n.cpu 0x1\n.shutdown kill\n",
    b"info\ninfo qtree\ninfo/x status\nx/4xw $pc\n",
    b"hmp\nhmp  info  status  \n# comment {\n",
    b"device_add e1000,,x,id=n1,,,multifunction\n",
    b"sendkey ctrl-alt-0x1d\nballoon 99999999999T\n",
    "x é=1 b='c\u00e9\u2028\u0085'\n".encode(),
]


def line_seeds():
    commands = json.load(open(os.path.join(ROOT, "grammar", "commands.json")))
    seeds = [c["example"] for c in commands if "example" in c]
    seeds += grammar_examples()
    entries = qmp_shell_entries()
    # Several lines a file: a script, as qmpsh reads one.
    seeds += ["\n".join(entries[i : i + 6]) + "\n" for i in range(0, len(entries), 6)]
    seen = set()
    for n, seed in enumerate(seeds):
        if seed in seen:
            continue
        seen.add(seed)
        write("line", f"{n:03}-{slug(seed.split(chr(10))[0])}", seed)
    for n, seed in enumerate(EDGE_LINES):
        write("line", f"edge-{n:02}", seed)


# --- framer -------------------------------------------------------------------

# Header: flags (bit 0: the guest agent's after_marker framer; bits 1-3: extra
# room asked of spare()), then how many chunk sizes follow, then the sizes.
# No sizes: the stream is fed a byte at a time.
BYTE_AT_A_TIME = b"\x00\x00"
SMALL_CHUNKS = b"\x00\x03\x07\x40\x01"
AGENT = b"\x01\x00"

# The guest agent's answer to guest-sync-delimited: stale bytes, the 0xFF
# marker, then the reply (no agent runs here, so these are written by hand).
AGENT_STREAMS = [
    b'{"return": {}}\n\xff{"return": 1234567}\n',
    b'garbage\x00\xff\xff{"return": {"version": "7.2.0"}}\n{"return": [1]}\n',
    b"no marker at all {\"return\": 5}\n",
]


def framer_seeds(recording):
    names = sorted(os.listdir(recording))
    streams = {n[: -len(".bin")]: open(os.path.join(recording, n), "rb").read() for n in names}
    for name, data in streams.items():
        if not data:
            continue
        if "query-qmp-schema" in name:
            # The whole reply is 200 KB and more; its head is a torn message.
            data = data[:12000]
        write("framer", name, BYTE_AT_A_TIME + data)
    for style in ("compact", "pretty"):
        small = [d for n, d in streams.items() if n.startswith(style) and len(d) < 4000]
        write("framer", f"{style}-session-chunked", SMALL_CHUNKS + b"".join(small))
    for n, data in enumerate(AGENT_STREAMS):
        write("framer", f"agent-{n}", AGENT + data)


# --- schema -------------------------------------------------------------------

SCHEMA = os.path.join(ROOT, "grammar", "qemu-7.2", "qmp-schema.json")

# (command, variant cases kept in unions (None: all), lines)
SCHEMA_SEEDS = [
    ("query-status", None, ["query-status", "info status", "query-status oops", ".schema query-status"]),
    ("device_add", None, ["device_add e1000,id=n1", "device_add driver=e1000 id=n1 bootindex=+5 multifunction=TRUE"]),
    ("device_del", None, ["device_del n1", "device_del id=123", "device_del"]),
    ("blockdev-add", {"file", "qcow2", "null-co"}, [
        "blockdev-add driver=qcow2 node-name=q0 file.driver=file file.filename=/tmp/a.qcow2",
        "blockdev-add driver=null-co node-name=n0 size=1M read-zeroes=true",
        "blockdev-add driver=null-co node-name=n0 sise=1",
        "blockdev-add driver=qcow2 node-name=q0 file=f0 cache.direct=on discard=unmap",
    ]),
    ("transaction", {"block-dirty-bitmap-add", "block-dirty-bitmap-clear", "abort"}, [
        "transaction( block-dirty-bitmap-add node=disk0 name=b0 granularity=0x10000 ; abort )",
        "transaction(\n  block-dirty-bitmap-clear node=disk0 name=b0\n  bogus-action x=1 )",
    ]),
    ("balloon", None, ["balloon 512", "balloon value=1073741824", "balloon lots"]),
    ("qom-set", None, ["qom-set /machine/peripheral/n1 x-prop 5", "qom-set path=/m property=p value=['a',True,None]"]),
    ("send-key", None, ["sendkey ctrl-alt-delete", 'send-key keys=[{"type":"qcode","data":"a"}] hold-time=0x10']),
    ("migrate-set-parameters", None, ["migrate-set-parameters tls-creds=null max-bandwidth=1G downtime-limit=300"]),
    ("netdev_add", {"user"}, ["netdev_add user,id=u1,hostfwd=tcp::2222-:22", "netdev_add type=user id=n5"]),
    ("block_resize", None, ["block_resize disk0 512M", "block_resize node-name=n0 size=2M"]),
    ("set_link", None, ["set_link n1 off", "set_link n1 maybe"]),
    ("object-add", {"iothread"}, ["object_add iothread,id=io1,poll-max-ns=0"]),
    ("screendump", None, ["screendump /tmp/shot.png -f png"]),
    ("eject", None, ["eject -f cd0"]),
]

# A schema that refers to itself every way it can (after src/schema.rs's test).
SELF_REFERENCE = [
    {"name": "query-qmp-schema", "meta-type": "command"},
    {"name": "foo", "meta-type": "command", "arg-type": "A"},
    {"name": "A", "meta-type": "object", "members": [{"name": "v", "type": "ALT"}, {"name": "w", "type": "[L]"},
                                                     {"name": "a", "type": "A", "default": None}],
     "tag": "v", "variants": [{"case": "x", "type": "A"}]},
    {"name": "ALT", "meta-type": "alternate", "members": [{"type": "ALT"}, {"type": "int"}]},
    {"name": "[L]", "meta-type": "array", "element-type": "[L]"},
    {"name": "int", "meta-type": "builtin", "json-type": "int"},
]


def closure(by_name, command, cases):
    """The entities `command` needs, with unions cut to the `cases` kept."""
    keep, todo = {}, ["query-qmp-schema", command]
    while todo:
        name = todo.pop()
        if name in keep or name not in by_name:
            continue
        entity = dict(by_name[name])
        if cases is not None and "variants" in entity:
            entity["variants"] = [v for v in entity["variants"] if v["case"] in cases]
        keep[name] = entity
        todo += [entity[k] for k in ("arg-type", "element-type") if k in entity]
        todo += [m["type"] for m in entity.get("members", []) if "type" in m]
        todo += [v["type"] for v in entity.get("variants", [])]
    return list(keep.values())


def schema_seeds():
    by_name = {e["name"]: e for e in json.load(open(SCHEMA))}
    for command, cases, lines in SCHEMA_SEEDS:
        entities = closure(by_name, command, cases)
        text = "[\n" + ",\n".join(json.dumps(e, separators=(",", ":")) for e in entities) + "\n]"
        for n, line in enumerate(lines):
            write("schema", f"{command}-{n}", text.encode() + b"\0" + line.encode())
    text = json.dumps(SELF_REFERENCE, separators=(",", ":")).encode()
    write("schema", "self-reference", text + b"\0foo v=x a.v=x a.a.v=x w=[]")
    write("schema", "reply-form", b'{"return": []}\0query-status')


def main():
    if len(sys.argv) > 1:
        recording = sys.argv[1]
    else:
        recording = tempfile.mkdtemp(prefix="qmp-recording-")
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "record_qemu.py"), recording], check=True)
    line_seeds()
    framer_seeds(recording)
    schema_seeds()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
