//! Tables people can read, for the `info` commands whose replies are lists
//! of things with states (`info jobs`, `info block-jobs`, `info migrate`,
//! `info block`, `info pci`, `info cpus`, `info chardev`): aligned columns
//! with the fields that matter, like HMP's own, from QMP's data, states in
//! colour. Only on a terminal, and not with `-p` or `--json`, which keep
//! the JSON as it is. A reply of a shape not expected gets no table (the
//! JSON shows instead).
//!
//! Every peer string goes through [`crate::visible`] before it is padded
//! or painted.

use colored::Color;
use serde_json::Value;

use super::render::{Palette, painted};
use crate::visible;

/// The table for `command`'s reply `value`, if it has one.
pub fn table(command: &str, value: &Value, palette: &Palette) -> Option<String> {
    let rows = match command {
        "query-jobs" => jobs(value.as_array()?),
        "query-block-jobs" => block_jobs(value.as_array()?),
        "query-migrate" => return migrate(value, palette),
        "query-block" => block(value.as_array()?),
        "query-pci" => pci(value.as_array()?),
        "query-cpus-fast" => cpus(value.as_array()?),
        "query-chardev" => chardevs(value.as_array()?),
        _ => return None,
    };
    Some(layout(&rows.header, &rows.rows, rows.none, palette))
}

/// Any table of plain text (several targets' `--table`), laid out as the
/// `info` tables are.
pub fn plain(header: &[&str], rows: Vec<Vec<String>>, palette: &Palette) -> String {
    let rows: Vec<Vec<Cell>> = rows.into_iter().map(|row| row.into_iter().map(cell).collect()).collect();
    layout(header, &rows, "", palette)
}

/// One cell: its text, and whether it names a state to colour.
struct Cell {
    text: String,
    state: bool,
}

fn cell(text: impl Into<String>) -> Cell {
    Cell { text: visible::line(&text.into()), state: false }
}

fn state(text: &str) -> Cell {
    Cell { text: visible::line(text), state: true }
}

/// The header and the rows.
struct Rows {
    header: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
    /// What to say when there are no rows.
    none: &'static str,
}

fn text<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number as it shows in a cell: `-` when absent.
fn count(object: &Value, key: &str) -> String {
    number(object, key).map_or("-".to_string(), |n| n.to_string())
}

fn number(object: &Value, key: &str) -> Option<u64> {
    object.get(key).and_then(Value::as_u64)
}

/// Bytes the way people read them: B, KiB, MiB, GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// `done of total (N%)`, when both are known.
fn progress(done: Option<u64>, total: Option<u64>) -> String {
    match (done, total) {
        (Some(done), Some(total)) if total > 0 => {
            format!("{} of {} ({}%)", bytes(done), bytes(total), crate::ui::render::percent(done, total))
        }
        (Some(done), _) => bytes(done),
        _ => "-".into(),
    }
}

fn yes_no(value: Option<&Value>) -> &'static str {
    match value.and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

fn jobs(list: &[Value]) -> Rows {
    let rows = list
        .iter()
        .map(|job| {
            let done = progress(number(job, "current-progress"), number(job, "total-progress"));
            vec![
                cell(text(job, "id")),
                cell(text(job, "type")),
                state(text(job, "status")),
                cell(done),
                cell(text(job, "error")),
            ]
        })
        .collect();
    Rows { header: vec!["ID", "TYPE", "STATUS", "PROGRESS", "ERROR"], rows, none: "no jobs" }
}

fn block_jobs(list: &[Value]) -> Rows {
    let rows = list
        .iter()
        .map(|job| {
            let speed = match number(job, "speed") {
                Some(0) | None => "unlimited".to_string(),
                Some(speed) => format!("{}/s", bytes(speed)),
            };
            vec![
                cell(text(job, "device")),
                cell(text(job, "type")),
                state(text(job, "status")),
                cell(progress(number(job, "offset"), number(job, "len"))),
                cell(speed),
                cell(yes_no(job.get("ready"))),
            ]
        })
        .collect();
    Rows { header: vec!["DEVICE", "TYPE", "STATUS", "PROGRESS", "SPEED", "READY"], rows, none: "no block jobs" }
}

/// `info migrate`: one field a line, as HMP prints it.
fn migrate(info: &Value, palette: &Palette) -> Option<String> {
    info.as_object()?;
    let Some(status) = info.get("status").and_then(Value::as_str) else {
        return Some("no migration\n".into());
    };
    let ram = info.get("ram").unwrap_or(&Value::Null);
    let millis = |key: &str| number(info, key).map(|ms| format!("{:.1} s", ms as f64 / 1000.0));
    let mut rows = vec![vec![cell("status"), state(status)]];
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            rows.push(vec![cell(name), cell(value)]);
        }
    };
    add("total time", millis("total-time"));
    add("expected downtime", millis("expected-downtime"));
    add("downtime", millis("downtime"));
    add("transferred", number(ram, "transferred").map(bytes));
    add("remaining", number(ram, "remaining").map(bytes));
    add("total", number(ram, "total").map(bytes));
    add("throughput", ram.get("mbps").and_then(Value::as_f64).map(|mbps| format!("{mbps:.1} Mbit/s")));
    add("dirty pages rate", number(ram, "dirty-pages-rate").map(|rate| format!("{rate} pages/s")));
    add("passes", number(ram, "dirty-sync-count").map(|n| n.to_string()));
    add("error", info.get("error-desc").and_then(Value::as_str).map(str::to_string));
    Some(layout(&["FIELD", "VALUE"], &rows, "", palette))
}

fn block(list: &[Value]) -> Rows {
    let rows = list
        .iter()
        .map(|device| {
            let name = match text(device, "device") {
                "" => text(device, "qdev"),
                named => named,
            };
            let Some(medium) = device.get("inserted") else {
                return vec![cell(name), cell("-"), cell("-"), cell("(no medium)"), cell("-"), cell("-")];
            };
            vec![
                cell(name),
                cell(text(medium, "node-name")),
                cell(text(medium, "drv")),
                cell(text(medium, "file")),
                cell(yes_no(medium.get("ro"))),
                cell(yes_no(device.get("removable"))),
            ]
        })
        .collect();
    Rows { header: vec!["DEVICE", "NODE", "FORMAT", "FILE", "RO", "REMOVABLE"], rows, none: "no block devices" }
}

fn pci(buses: &[Value]) -> Rows {
    let mut rows = Vec::new();
    for bus in buses {
        pci_devices(bus.get("devices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), &mut rows);
    }
    Rows { header: vec!["BUS", "SLOT", "FN", "VENDOR:DEVICE", "CLASS", "QDEV"], rows, none: "no PCI devices" }
}

/// The devices of one bus, and of the buses behind its bridges.
fn pci_devices(devices: &[Value], rows: &mut Vec<Vec<Cell>>) {
    for device in devices {
        let id = device.get("id").unwrap_or(&Value::Null);
        let class = device.get("class_info").unwrap_or(&Value::Null);
        let class_text = match text(class, "desc") {
            "" => number(class, "class").map_or("-".to_string(), |c| format!("{c:04x}")),
            desc => desc.to_string(),
        };
        let ids = match (number(id, "vendor"), number(id, "device")) {
            (Some(vendor), Some(device)) => format!("{vendor:04x}:{device:04x}"),
            _ => "-".into(),
        };
        rows.push(vec![
            cell(count(device, "bus")),
            cell(count(device, "slot")),
            cell(count(device, "function")),
            cell(ids),
            cell(class_text),
            cell(text(device, "qdev_id")),
        ]);
        let behind = device.get("pci_bridge").and_then(|bridge| bridge.get("devices")).and_then(Value::as_array);
        pci_devices(behind.map(Vec::as_slice).unwrap_or_default(), rows);
    }
}

fn cpus(list: &[Value]) -> Rows {
    let rows = list
        .iter()
        .map(|cpu| {
            let props = cpu.get("props").unwrap_or(&Value::Null);
            let place: Vec<String> =
                ["socket-id", "core-id", "thread-id"].iter().map(|key| count(props, key)).collect();
            vec![
                cell(count(cpu, "cpu-index")),
                cell(count(cpu, "thread-id")),
                cell(place.join("/")),
                cell(text(cpu, "target")),
                cell(text(cpu, "qom-path")),
            ]
        })
        .collect();
    Rows { header: vec!["CPU", "HOST THREAD", "SOCKET/CORE/THREAD", "TARGET", "QOM PATH"], rows, none: "no CPUs" }
}

fn chardevs(list: &[Value]) -> Rows {
    let rows = list
        .iter()
        .map(|chardev| {
            let open = match chardev.get("frontend-open").and_then(Value::as_bool) {
                Some(true) => state("open"),
                Some(false) => state("closed"),
                None => cell("-"),
            };
            vec![cell(text(chardev, "label")), cell(text(chardev, "filename")), open]
        })
        .collect();
    Rows { header: vec!["LABEL", "FILENAME", "FRONTEND"], rows, none: "no character devices" }
}

/// The colour of a state: good, bad, or on the way.
fn state_color(name: &str, palette: &Palette) -> Option<Color> {
    match name {
        "running" | "active" | "completed" | "concluded" | "ready" | "open" => palette.ok,
        "failed" | "aborting" | "cancelled" | "cancelling" | "closed" => palette.error,
        _ => palette.literal,
    }
}

/// Columns padded to their widest cell, two spaces apart; the last is not
/// padded, and a column empty in every row is left out (`info jobs`' ERROR
/// while nothing failed). A table without rows says so in a word.
fn layout(header: &[&str], rows: &[Vec<Cell>], none: &str, palette: &Palette) -> String {
    if rows.is_empty() {
        return format!("{none}\n");
    }
    let used: Vec<bool> = (0..header.len())
        .map(|i| rows.iter().any(|row| row.get(i).is_some_and(|cell| !cell.text.is_empty())))
        .collect();
    let keep = |i: &usize| used.get(*i).copied().unwrap_or(false);
    let header: Vec<&str> = header.iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, h)| *h).collect();
    let rows: Vec<Vec<&Cell>> =
        rows.iter().map(|row| row.iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, c)| c).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.text.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<(String, Option<Color>)>| {
        let last = cells.len().saturating_sub(1);
        for (i, ((text, color), width)) in cells.into_iter().zip(&widths).enumerate() {
            let pad = if i == last { 0 } else { width.saturating_sub(text.chars().count()) + 2 };
            out.push_str(&painted(&text, color));
            out.push_str(&" ".repeat(pad));
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(header.iter().map(|h| (h.to_string(), palette.key)).collect());
    for row in &rows {
        line(
            row.iter()
                .map(|cell| {
                    let color = cell.state.then(|| state_color(&cell.text, palette)).flatten();
                    (cell.text.clone(), color)
                })
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(command: &str, value: Value) -> String {
        table(command, &value, &Palette::plain()).unwrap_or_default()
    }

    #[test]
    fn jobs_line_up_with_their_progress() {
        let reply = json!([
            {"id": "m0", "type": "mirror", "status": "running", "current-progress": 16777216,
             "total-progress": 67108864},
            {"id": "backup-long", "type": "backup", "status": "concluded", "current-progress": 0,
             "total-progress": 0, "error": "Input/output error"}
        ]);
        assert_eq!(
            plain("query-jobs", reply),
            "ID           TYPE    STATUS     PROGRESS                    ERROR\n\
             m0           mirror  running    16.0 MiB of 64.0 MiB (25%)\n\
             backup-long  backup  concluded  0 B                         Input/output error\n"
        );
        assert_eq!(plain("query-jobs", json!([])), "no jobs\n");
        // No job failed: no ERROR column (the README's example).
        let running = json!([{"id": "m0", "type": "mirror", "status": "running",
            "current-progress": 16777216, "total-progress": 67108864}]);
        assert_eq!(
            plain("query-jobs", running),
            "ID  TYPE    STATUS   PROGRESS\nm0  mirror  running  16.0 MiB of 64.0 MiB (25%)\n"
        );
    }

    #[test]
    fn a_migration_is_a_field_a_line_and_none_says_so() {
        let reply = json!({"status": "active", "total-time": 1500,
            "ram": {"transferred": 1048576, "remaining": 0, "total": 134217728, "mbps": 268.4}});
        assert_eq!(
            plain("query-migrate", reply),
            "FIELD        VALUE\n\
             status       active\n\
             total time   1.5 s\n\
             transferred  1.0 MiB\n\
             remaining    0 B\n\
             total        128.0 MiB\n\
             throughput   268.4 Mbit/s\n"
        );
        assert_eq!(plain("query-migrate", json!({})), "no migration\n");
    }

    #[test]
    fn peer_text_is_made_visible_and_states_are_coloured() {
        let reply = json!([{"label": "evil\u{1b}[2J", "filename": "pty:/dev/pts/3", "frontend-open": true}]);
        let shown = table("query-chardev", &reply, &Palette::colored()).unwrap();
        assert!(!shown.contains("\u{1b}[2J"), "{shown:?}");
        assert!(shown.contains(r"evil\x1b[2J"), "{shown:?}");
        assert!(shown.contains(&painted("open", Palette::colored().ok)), "{shown:?}");
    }

    #[test]
    fn pci_devices_behind_a_bridge_are_listed_and_other_commands_have_no_table() {
        let reply = json!([{"bus": 0, "devices": [
            {"bus": 0, "slot": 1, "function": 0, "class_info": {"class": 1537, "desc": "ISA bridge"},
             "id": {"vendor": 32902, "device": 28672}, "qdev_id": ""},
            {"bus": 0, "slot": 3, "function": 0, "class_info": {"class": 1540},
             "id": {"vendor": 6966, "device": 1}, "qdev_id": "br0",
             "pci_bridge": {"devices": [{"bus": 1, "slot": 0, "function": 0, "class_info": {"class": 512},
                 "id": {"vendor": 32902, "device": 4110}, "qdev_id": "n1"}]}}
        ]}]);
        let shown = plain("query-pci", reply);
        assert!(shown.contains("8086:7000      ISA bridge"), "{shown}");
        assert!(shown.lines().last().is_some_and(|l| l.starts_with("1    0     0   8086:100e") && l.ends_with("n1")));
        assert_eq!(table("query-status", &json!({"status": "running"}), &Palette::plain()), None);
        // A reply of another shape: no table, the JSON shows.
        assert_eq!(table("query-jobs", &json!({"odd": 1}), &Palette::plain()), None);
    }
}
