//! In-process micro-benchmarks: the line parser, the binder (without and
//! with the recorded schema), loading a schema, the framer on a recorded
//! stream, the renderer, joining a JSON command of many lines, and what
//! the REPL does at each key on a long line (hint, highlight, Tab). Whole-process numbers are in `benches/e2e.rs`.
//!
//!     cargo bench --bench micro              # all groups, about a minute
//!     cargo bench --bench micro -- frame     # one group

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

use qmpsh::language::bind::{self, Context};
use qmpsh::language::line::{Assembler, parse_line};
use qmpsh::language::schema::Schema;
use qmpsh::qmp::Framer;
use qmpsh::shell::repl::{self, Knowledge};
use qmpsh::ui::render::{self, Palette};

/// QEMU 7.2's schema (187 KB), the one earlier measurements read.
const SCHEMA: &str = include_str!("../grammar/qemu-7.2/qmp-schema.json");

/// Representative lines, by name: a table command, QemuOpts values,
/// qmp-shell dotted keys, a raw QMP message, a Python literal.
const LINES: &[(&str, &str)] = &[
    ("table", "info status"),
    ("qemuopts", "device_add e1000,id=n1,mac=52:54:00:12:34:56"),
    ("dotted", "blockdev-add driver=qcow2 node-name=q0 file.driver=file file.filename=/tmp/a.qcow2"),
    (
        "json",
        r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "q0", "file": {"driver": "file", "filename": "/tmp/a.qcow2"}}}"#,
    ),
    ("python", "qom-set path=/m property=p value=['a',True,None]"),
];

/// Socket reads are this big (`qmp::socket`).
const READ: usize = 64 * 1024;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for &(name, text) in LINES {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter(|| parse_line(black_box(text)).unwrap())
        });
    }
    group.finish();
}

fn bind(c: &mut Criterion) {
    let recorded = qmpsh::language::version::newest().schema();
    let mut group = c.benchmark_group("bind");
    for &(name, text) in LINES {
        let line = parse_line(text).unwrap();
        let bare = Context::default();
        group.bench_with_input(BenchmarkId::new("no-schema", name), &line, |b, line| {
            b.iter(|| bind::bind(black_box(line), text, &bare).unwrap())
        });
        if bind::needs_schema(&line) {
            let typed = Context { schema: Some(recorded), ..Context::default() };
            group.bench_with_input(BenchmarkId::new("schema", name), &line, |b, line| {
                b.iter(|| bind::bind(black_box(line), text, &typed).unwrap())
            });
        }
    }
    group.finish();
}

fn load_schema(c: &mut Criterion) {
    let mut group = c.benchmark_group("schema");
    group.throughput(Throughput::Bytes(SCHEMA.len() as u64));
    group.bench_function("from_saved", |b| b.iter(|| Schema::from_saved(black_box(SCHEMA)).unwrap()));
    group.finish();
}

/// What a monitor sends: 1,000 `query-status` replies, each followed by an
/// event, then one `query-qmp-schema` reply; CRLF after each, as QEMU does.
fn stream() -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut messages = 0;
    for id in 0..1000 {
        let reply = json!({"return": {"status": "running", "singlestep": false, "running": true}, "id": id});
        let event = json!({
            "timestamp": {"seconds": 1_732_560_000 + id, "microseconds": 123_456},
            "event": if id % 2 == 0 { "STOP" } else { "RESUME" },
        });
        for message in [reply, event] {
            serde_json::to_writer(&mut bytes, &message).unwrap();
            bytes.extend_from_slice(b"\r\n");
            messages += 1;
        }
    }
    write!(bytes, "{{\"return\": {}, \"id\": 1}}\r\n", SCHEMA.trim_end()).unwrap();
    (bytes, messages + 1)
}

fn frame(c: &mut Criterion) {
    let (bytes, messages) = stream();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("recorded-stream", |b| {
        b.iter(|| {
            let mut framer = Framer::new();
            let mut count = 0;
            for chunk in bytes.chunks(READ) {
                let room = framer.spare(READ);
                room[..chunk.len()].copy_from_slice(chunk);
                framer.filled(chunk.len());
                while let Some(message) = framer.next_message() {
                    black_box(message.unwrap());
                    count += 1;
                }
            }
            assert_eq!(count, messages);
        })
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let palette = Palette::plain();
    let value: Value = serde_json::from_str(SCHEMA).unwrap();
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("render");
    for (name, pretty) in [("schema-pretty", true), ("schema-compact", false)] {
        out.clear();
        render::reply(&mut out, &value, false, pretty, &palette).unwrap();
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                render::reply(&mut out, black_box(&value), false, pretty, &palette).unwrap();
            })
        });
    }
    let event = json!({
        "timestamp": {"seconds": 1_732_560_000, "microseconds": 123_456},
        "event": "BLOCK_JOB_COMPLETED",
        "data": {"device": "job0", "len": 1_073_741_824, "offset": 1_073_741_824, "speed": 0, "type": "mirror"},
    });
    out.clear();
    render::event(&mut out, &event, &palette).unwrap();
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("event", |b| {
        b.iter(|| {
            out.clear();
            render::event(&mut out, black_box(&event), &palette).unwrap();
        })
    });
    group.finish();
}

/// A raw QMP command pretty-printed over `lines` lines, as one would
/// paste it: the time to join it grows with its length, not its square.
fn assemble(c: &mut Criterion) {
    let mut group = c.benchmark_group("assemble");
    for lines in [10_000, 40_000] {
        let mut text = vec!["{\"execute\": \"x\", \"arguments\": {\"list\": [".to_string()];
        text.extend((0..lines - 2).map(|n| format!("    {{\"n\": {n}, \"s\": \"a [ \\\" {{\"}},")));
        text.push("{}]}}".to_string());
        group.throughput(Throughput::Elements(lines as u64));
        group.bench_function(BenchmarkId::new("pretty-json-lines", lines), |b| {
            b.iter(|| {
                let mut assembler = Assembler::new();
                let joined: Vec<_> = text.iter().filter_map(|line| assembler.push(line)).collect();
                assert_eq!(joined.len(), 1);
                joined
            })
        });
    }
    group.finish();
}

/// The REPL at each key of a long line (about 1.5 KB: forty `key=value`
/// arguments, a quoted one and a JSON one), with the recorded schema: the
/// hint and the highlighting are drawn at every key, completion at Tab.
fn keystroke(c: &mut Criterion) {
    let knowledge = Knowledge { schema: Some(Arc::new(Schema::from_saved(SCHEMA).unwrap())), ..Knowledge::default() };
    let mut line = String::from("blockdev-add driver=qcow2 node-name=q0 file.driver=file file.filename=/tmp/a.qcow2");
    for n in 0..36 {
        line.push_str(&format!(" x-option-{n}=value-{n}"));
    }
    line.push_str(r#" label="a b c" opts={"a": [1, 2, 3], "b": "c d"} read-only=on dis"#);
    let palette = Palette::colored();
    let mut group = c.benchmark_group("keystroke");
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("complete", |b| b.iter(|| repl::complete(black_box(&line), line.len(), &knowledge)));
    group.bench_function("hint", |b| b.iter(|| repl::hint(black_box(&line), line.len(), &knowledge)));
    group.bench_function("highlight", |b| b.iter(|| repl::highlight(black_box(&line), &palette)));
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = micro;
    config = config();
    targets = parse, bind, load_schema, frame, render, assemble, keystroke
}
criterion_main!(micro);
