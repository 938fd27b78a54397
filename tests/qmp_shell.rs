//! The differential test against qmp-shell (QEMU's own shell, PyPI
//! `qemu.qmp`). qmpsh promises that a line qmp-shell accepts means the same
//! in qmpsh, except for deliberate differences; this test holds it to that.
//!
//! Every entry of `qmp_shell/corpus.txt` goes through `qmp-shell -v` and
//! `qmpsh -v --show-secrets --keep-going`, each against its own real QEMU
//! (a `pc` machine with disks, NICs and an iothread, so the commands really
//! run), and must send the same QMP message as qmp-shell, or be listed in
//! [`DIFFERENCES`] with what qmpsh sends instead and why. A second test
//! holds `qmpsh --dry-run --schema` to exactly what the connected run
//! sends.
//!
//! Both tools read one stream: each entry, then a separator command that
//! names the entry. The messages a tool sends are cut at the separators into
//! one group per entry: empty when the tool refused the line, and missing
//! when the tool swallowed the separator (an unclosed block, a stop).

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use common::{Qemu, Run, finish, qmpsh, qmpsh_command};

const CORPUS: &str = include_str!("qmp_shell/corpus.txt");

/// The machine both QEMUs run. The files it and the corpus use ([`IMAGES`])
/// are made by [`start_qemu`] in QEMU's folder, its working directory.
const MACHINE: &[&str] = &[
    "-machine",
    "pc",
    "-accel",
    "tcg",
    "-S",
    "-blockdev",
    "driver=null-co,node-name=disk0,size=67108864",
    "-device",
    "virtio-blk-pci,drive=disk0,id=vd0",
    "-object",
    "iothread,id=io0",
    "-blockdev",
    "driver=file,node-name=img0,filename=disk.img",
    "-blockdev",
    "driver=raw,node-name=raw0,file=img0",
    "-device",
    "virtio-blk-pci,drive=raw0,id=vd1,iothread=io0",
    "-device",
    "virtio-scsi-pci,id=scsi0",
    "-device",
    "scsi-cd,bus=scsi0.0,id=cd0",
    "-netdev",
    "user,id=net0",
    "-device",
    "e1000,netdev=net0,id=nic0",
    "-netdev",
    "user,id=net1",
    "-device",
    "virtio-balloon-pci,id=balloon0",
    "-chardev",
    "ringbuf,id=rb0,size=1024",
];

/// Sparse files (name, size) in QEMU's folder for MACHINE and the corpus.
const IMAGES: &[(&str, u64)] = &[("disk.img", 64 << 20), ("spare.img", 8 << 20), ("qcow.img", 0), ("cd.iso", 1 << 20)];

/// The separator after entry k is `trace-event-get-state
/// name=qmpsh-corpus-entry-k*`: harmless (a pattern that matches no trace
/// event), and it says which entry it ends.
const SEPARATOR: &str = "trace-event-get-state";
const SEPARATOR_NAME: &str = "qmpsh-corpus-entry-";

/// What qmpsh sends on its own account (the handshake, the schema), not
/// for a line; the corpus must not use these.
const INTERNAL: &[&str] = &["qmp_capabilities", "query-qmp-schema"];

/// Commands the corpus must not use: the separator, qmpsh's own, and those
/// that end or start the VM.
const FORBIDDEN: &[&str] = &[SEPARATOR, "qmp_capabilities", "query-qmp-schema", "quit", "cont"];

/// Where qmpsh deliberately sends something else than qmp-shell: the corpus
/// entry, what qmpsh sends (compact JSON without `id`, or `refused` when it
/// sends nothing), and why. Where the schema leaves a value open (`any`,
/// device_add's extra properties), the property's own type decides
/// (`qom-list`, `device-list-properties`), as it does for QEMU.
const DIFFERENCES: &[(&str, &str, &str)] = &[
    ("query-named-block-nodes flat=on", r#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#, BOOL),
    (
        r#"query-cpu-model-expansion type=full model={"name": "qemu64"}"#,
        r#"{"execute":"query-cpu-model-expansion","arguments":{"type":"full","model":{"name":"qemu64"}}}"#,
        JSON_WITH_SPACES,
    ),
    (r#"query-cpu-model-expansion type=partial model={"name":"qemu64"}"#, "refused", ENUM),
    ("query-status extra=1", "refused", UNKNOWN_ARGUMENT),
    (r#"{"execute":"query-status"}"#, r#"{"execute":"query-status","arguments":{}}"#, RAW_JSON),
    (r#"qom-list path="/machine""#, r#"{"execute":"qom-list","arguments":{"path":"/machine"}}"#, QUOTES),
    ("qom-list path='/objects'", r#"{"execute":"qom-list","arguments":{"path":"/objects"}}"#, QUOTES),
    (
        r#"qom-get path="/machine" property='type'"#,
        r#"{"execute":"qom-get","arguments":{"path":"/machine","property":"type"}}"#,
        QUOTES,
    ),
    ("qom-get path=/machine", "refused", MISSING),
    ("qom-set path=/objects/io0 property=poll-max-ns value=18446744073709551616", "refused", PROPERTY_NOT_INT),
    (
        "qom-set path=/objects/io0 property=poll-max-ns value=123456789012345678901234567890",
        "refused",
        PROPERTY_NOT_INT,
    ),
    (
        "qom-set path=/objects/io0 property=poll-max-ns value=0x10",
        r#"{"execute":"qom-set","arguments":{"path":"/objects/io0","property":"poll-max-ns","value":16}}"#,
        PROPERTY_INT,
    ),
    ("qom-set path=/objects/io0 property=poll-max-ns value=1.5", "refused", PROPERTY_NOT_INT),
    ("qom-set path=/objects/io0 property=poll-max-ns value=1e3", "refused", PROPERTY_NOT_INT),
    ("qom-set path=/objects/io0 property=poll-max-ns value=null", "refused", PROPERTY_NOT_INT),
    ("qom-set path=/objects/io0 property=poll-max-ns value=None", "refused", PROPERTY_NOT_INT),
    ("qom-set path=/objects/io0 property=aio-max-batch value=1__0", "refused", PROPERTY_NOT_INT),
    ("qom-set path=/objects/io0 property=aio-max-batch value=_1", "refused", PROPERTY_NOT_INT),
    (
        "qom-set path=/machine property=dump-guest-core value=off",
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"dump-guest-core","value":false}}"#,
        PROPERTY_BOOL,
    ),
    (
        "qom-set path=/machine property=dump-guest-core value=yes",
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"dump-guest-core","value":true}}"#,
        PROPERTY_BOOL,
    ),
    (
        "qom-set path=/machine property=append value=123",
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":"123"}}"#,
        PROPERTY_STR,
    ),
    (
        "device_add driver=virtio-blk-pci id=vd4 drive=r2 serial=1234",
        r#"{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd4","drive":"r2","serial":"1234"}}"#,
        PROPERTY_STR,
    ),
    (
        "device_add driver=virtio-net-pci id=vn0 netdev=n7 mq=off",
        r#"{"execute":"device_add","arguments":{"driver":"virtio-net-pci","id":"vn0","netdev":"n7","mq":false}}"#,
        PROPERTY_BOOL,
    ),
    (
        "device_add driver=scsi-hd id=sd0 bus=scsi1.0 drive=q1 scsi-id=0x1 lun=0",
        r#"{"execute":"device_add","arguments":{"driver":"scsi-hd","id":"sd0","bus":"scsi1.0","drive":"q1","scsi-id":1,"lun":0}}"#,
        PROPERTY_INT,
    ),
    (
        r#"qom-set path=/machine property=append value="quiet splash""#,
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":"quiet splash"}}"#,
        QUOTES,
    ),
    (
        "qom-set path=/machine property=append value='single'",
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":"single"}}"#,
        QUOTES,
    ),
    (
        r#"qom-set path=/machine property=append value="""#,
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":""}}"#,
        QUOTES,
    ),
    (
        r#"qom-set path=/machine property=append value="tab\there""#,
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":"tab\there"}}"#,
        QUOTES,
    ),
    ("qom-set path=/machine property=append value={a:1}", "refused", NOT_A_LITERAL),
    ("qom-set path=/machine property=append value=[nope]", "refused", NOT_A_LITERAL),
    // The comment hides the `]` from the literal; the line still ends at it.
    (r"qom-set path=/machine property=append value=[1,#c\x27]", "refused", NOT_A_LITERAL),
    (
        "qom-set path=/machine property=append value=[1, 2]",
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":[1,2]}}"#,
        JSON_WITH_SPACES,
    ),
    (
        r#"qom-set path=/machine property=append value={"k": "v"}"#,
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":{"k":"v"}}}"#,
        JSON_WITH_SPACES,
    ),
    (
        "qom-set path=/machine property=append value=[True, False]",
        r#"{"execute":"qom-set","arguments":{"path":"/machine","property":"append","value":[true,false]}}"#,
        JSON_WITH_SPACES,
    ),
    ("qom-set path=/machine property=append", "refused", MISSING),
    (
        "object-add qom-type=iothread id=io4 poll-max-ns=0x10",
        r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"io4","poll-max-ns":16}}"#,
        INT,
    ),
    (
        "object-add qom-type=memory-backend-ram id=mem1 size=8M prealloc=off",
        r#"{"execute":"object-add","arguments":{"qom-type":"memory-backend-ram","id":"mem1","size":8388608,"prealloc":false}}"#,
        "the schema types `size` (int: 8M is 8388608) and `prealloc` (bool: off)",
    ),
    (
        "object-add qom-type=throttle-group id=tg0 limits.iops-total=1000 limits.bps-total=1048576",
        r#"{"execute":"object-add","arguments":{"qom-type":"throttle-group","id":"tg0","limits":{"iops-total":1000,"bps-total":1048576}}}"#,
        DOTTED,
    ),
    (
        "object-add qom-type=secret id=sec2 data=12345",
        r#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"sec2","data":"12345"}}"#,
        STR,
    ),
    ("object-add qom-type=secret id=sec3 data=x format=hex", "refused", ENUM),
    ("object-add qom-type=no-such-type id=x1", "refused", ENUM),
    ("object-add qom-type=iothread id=io6 bogus=1", "refused", UNKNOWN_ARGUMENT),
    ("object-add qom-type=iothread", "refused", MISSING),
    (
        r#"object-add qom-type=iothread id="io 7""#,
        r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"io 7"}}"#,
        QUOTES,
    ),
    (
        "blockdev-add driver=null-co node-name=nc2 size=1M read-zeroes=true",
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"nc2","size":1048576,"read-zeroes":true}}"#,
        INT,
    ),
    (
        "blockdev-add driver=null-aio node-name=na1 latency-ns=1000 read-zeroes=on",
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-aio","node-name":"na1","latency-ns":1000,"read-zeroes":true}}"#,
        BOOL,
    ),
    (
        "blockdev-add driver=null-co node-name=nc3 size=0x100000",
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"nc3","size":1048576}}"#,
        INT,
    ),
    (
        "blockdev-add driver=null-co node-name=123",
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"123"}}"#,
        STR,
    ),
    ("blockdev-add driver=null-co node-name=nc5 detect-zeroes=sometimes", "refused", ENUM),
    ("blockdev-add driver=NULL-CO node-name=nc6", "refused", ENUM),
    ("blockdev-add driver=null-co node-name=nc7 no-such-option=1", "refused", UNKNOWN_ARGUMENT),
    (
        "blockdev-add driver=null-co node-name=nc8 cache.direct=false cache.no-flush=true",
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"nc8","cache":{"direct":false,"no-flush":true}}}"#,
        DOTTED,
    ),
    (
        "blockdev-add driver=raw node-name=r1 file.driver=file file.filename=spare.img file.locking=off read-only=true",
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r1","file":{"driver":"file","filename":"spare.img","locking":"off"},"read-only":true}}"#,
        DOTTED,
    ),
    (
        "blockdev-add driver=raw node-name=r2 file.driver=file file.filename=spare.img file.locking=off file.aio=threads",
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r2","file":{"driver":"file","filename":"spare.img","locking":"off","aio":"threads"}}}"#,
        DOTTED,
    ),
    (
        "blockdev-add driver=raw node-name=r3 offset=4096 size=65536 file.driver=null-co file.size=1048576",
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r3","offset":4096,"size":65536,"file":{"driver":"null-co","size":1048576}}}"#,
        DOTTED,
    ),
    (
        "blockdev-create job-id=mk1 options.driver=qcow2 options.file=qf options.size=16777216 options.cluster-size=65536",
        r#"{"execute":"blockdev-create","arguments":{"job-id":"mk1","options":{"driver":"qcow2","file":"qf","size":16777216,"cluster-size":65536}}}"#,
        DOTTED,
    ),
    (
        "blockdev-create job-id=42 options.driver=qcow2 options.file=nc4 options.size=1048576",
        r#"{"execute":"blockdev-create","arguments":{"job-id":"42","options":{"driver":"qcow2","file":"nc4","size":1048576}}}"#,
        "qmp-shell's dotted-key bug and `job-id` is a str in the schema",
    ),
    (
        r#"blockdev-add driver=blkdebug node-name=bd0 image.driver=null-co image.size=1048576 inject-error=[{"event":"read_aio","errno":5}]"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"blkdebug","node-name":"bd0","image":{"driver":"null-co","size":1048576},"inject-error":[{"event":"read_aio","errno":5}]}}"#,
        DOTTED,
    ),
    (
        r#"blockdev-add driver=qcow2 node-name=q2 file.driver=file file.filename="qcow.img""#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"q2","file":{"driver":"file","filename":"qcow.img"}}}"#,
        "qmp-shell's dotted-key bug and qmpsh removes the quotes",
    ),
    (
        "block-dirty-bitmap-add node=disk0 name=b2 granularity=64K",
        r#"{"execute":"block-dirty-bitmap-add","arguments":{"node":"disk0","name":"b2","granularity":65536}}"#,
        INT,
    ),
    (
        "block_resize node-name=q1 size=32M",
        r#"{"execute":"block_resize","arguments":{"node-name":"q1","size":33554432}}"#,
        INT,
    ),
    ("eject id=cd0 force=on", r#"{"execute":"eject","arguments":{"id":"cd0","force":true}}"#, BOOL),
    ("blockdev-backup job-id=bk0 device=disk0 target=nc1 sync=FULL", "refused", ENUM),
    (
        "nbd-server-start addr.type=unix addr.data.path=nbd.sock",
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"nbd.sock"}}}}"#,
        DOTTED,
    ),
    (
        "chardev-add id=c1 backend.type=null backend.data={}",
        r#"{"execute":"chardev-add","arguments":{"id":"c1","backend":{"type":"null","data":{}}}}"#,
        DOTTED,
    ),
    ("chardev-add id=c1b backend.type=null", "refused", MISSING),
    (
        "chardev-add id=c2 backend.type=ringbuf backend.data.size=4096",
        r#"{"execute":"chardev-add","arguments":{"id":"c2","backend":{"type":"ringbuf","data":{"size":4096}}}}"#,
        DOTTED,
    ),
    (
        "chardev-add id=c3 backend.type=file backend.data.out=chr.log backend.data.append=true",
        r#"{"execute":"chardev-add","arguments":{"id":"c3","backend":{"type":"file","data":{"out":"chr.log","append":true}}}}"#,
        DOTTED,
    ),
    (
        "chardev-add id=c4 backend.type=socket backend.data.addr.type=unix backend.data.addr.data.path=chr.sock backend.data.server=true backend.data.wait=false",
        r#"{"execute":"chardev-add","arguments":{"id":"c4","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"chr.sock"}},"server":true,"wait":false}}}}"#,
        DOTTED,
    ),
    (
        "chardev-add id=c5 backend.type=socket backend.data.addr.type=inet backend.data.addr.data.host=127.0.0.1 backend.data.addr.data.port=0 backend.data.server=true backend.data.wait=false",
        r#"{"execute":"chardev-add","arguments":{"id":"c5","backend":{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"0"}},"server":true,"wait":false}}}}"#,
        "qmp-shell's dotted-key bug and `port` is a str in the schema",
    ),
    (
        "chardev-add id=c6 backend.type=ringbuf backend.data.size=64K",
        r#"{"execute":"chardev-add","arguments":{"id":"c6","backend":{"type":"ringbuf","data":{"size":65536}}}}"#,
        "qmp-shell's dotted-key bug and `size` is an int in the schema: 64K is 65536",
    ),
    (
        "chardev-add id=c7 backend.type=memory backend.data.size=0x1000",
        r#"{"execute":"chardev-add","arguments":{"id":"c7","backend":{"type":"memory","data":{"size":4096}}}}"#,
        "qmp-shell's dotted-key bug and `size` is an int in the schema: 0x1000 is 4096",
    ),
    ("chardev-add id=c8 backend.type=no-such backend.data={}", "refused", ENUM),
    (
        "chardev-add id=c9 backend.type=ringbuf backend.data.logfile=ring.log backend.data.logappend=FALSE",
        r#"{"execute":"chardev-add","arguments":{"id":"c9","backend":{"type":"ringbuf","data":{"logfile":"ring.log","logappend":false}}}}"#,
        DOTTED,
    ),
    (
        "chardev-add id=😀 backend.type=null backend.data={}",
        r#"{"execute":"chardev-add","arguments":{"id":"😀","backend":{"type":"null","data":{}}}}"#,
        DOTTED,
    ),
    ("ringbuf-write device=c2 data=42", r#"{"execute":"ringbuf-write","arguments":{"device":"c2","data":"42"}}"#, STR),
    (
        "ringbuf-write device=c2 data=true",
        r#"{"execute":"ringbuf-write","arguments":{"device":"c2","data":"true"}}"#,
        STR,
    ),
    (
        r#"ringbuf-write device=c2 data="two words""#,
        r#"{"execute":"ringbuf-write","arguments":{"device":"c2","data":"two words"}}"#,
        QUOTES,
    ),
    (
        "ringbuf-read device=c2 size=0x10 format=base64",
        r#"{"execute":"ringbuf-read","arguments":{"device":"c2","size":16,"format":"base64"}}"#,
        INT,
    ),
    (
        "netdev_add type=user id=n7 ipv6=off",
        r#"{"execute":"netdev_add","arguments":{"type":"user","id":"n7","ipv6":false}}"#,
        BOOL,
    ),
    (
        "netdev_add type=hubport id=hp1 hubid=0x1",
        r#"{"execute":"netdev_add","arguments":{"type":"hubport","id":"hp1","hubid":1}}"#,
        INT,
    ),
    ("netdev_add type=bogus id=n12", "refused", ENUM),
    ("netdev_add type=user id=42", r#"{"execute":"netdev_add","arguments":{"type":"user","id":"42"}}"#, STR),
    ("netdev_add type=user", "refused", MISSING),
    ("set_link name=nic0 up=off", r#"{"execute":"set_link","arguments":{"name":"nic0","up":false}}"#, BOOL),
    ("set_link name=nic0 up=yes", r#"{"execute":"set_link","arguments":{"name":"nic0","up":true}}"#, BOOL),
    ("set_link name=nic0 up=maybe", "refused", NOT_A_BOOL),
    ("set_link name=nic0", "refused", MISSING),
    (
        r#"device_add driver=virtio-blk-pci id=vd5 drive=r3 serial="SN 42""#,
        r#"{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd5","drive":"r3","serial":"SN 42"}}"#,
        QUOTES,
    ),
    (
        "device_add driver=e1000 id=123 netdev=n10",
        r#"{"execute":"device_add","arguments":{"driver":"e1000","id":"123","netdev":"n10"}}"#,
        STR,
    ),
    ("device_add id=nic7 netdev=n10", "refused", MISSING),
    ("device_del id=123", r#"{"execute":"device_del","arguments":{"id":"123"}}"#, STR),
    ("device_del", "refused", MISSING),
    ("balloon value=64M", r#"{"execute":"balloon","arguments":{"value":67108864}}"#, INT),
    ("balloon value=0x4000000", r#"{"execute":"balloon","arguments":{"value":67108864}}"#, INT),
    ("balloon value=1.5", "refused", NOT_AN_INT),
    ("balloon", "refused", MISSING),
    (
        "pmemsave val=0x1000 size=16 filename=pmem2.bin",
        r#"{"execute":"pmemsave","arguments":{"val":4096,"size":16,"filename":"pmem2.bin"}}"#,
        INT,
    ),
    ("screendump filename=shot.bmp format=bmp", "refused", ENUM),
    (
        r#"human-monitor-command command-line="info name""#,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"info name"}}"#,
        QUOTES,
    ),
    (
        "human-monitor-command command-line='info status'",
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}"#,
        QUOTES,
    ),
    (
        "migrate-set-parameters max-bandwidth=1G",
        r#"{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1073741824}}"#,
        INT,
    ),
    (
        "migrate-set-parameters multifd-zlib-level=0x9",
        r#"{"execute":"migrate-set-parameters","arguments":{"multifd-zlib-level":9}}"#,
        INT,
    ),
    (
        "migrate-set-parameters tls-hostname=null",
        r#"{"execute":"migrate-set-parameters","arguments":{"tls-hostname":null}}"#,
        STR_OR_NULL,
    ),
    (
        "transaction(\n  block-dirty-bitmap-add node=disk0 name=t4 persistent=off )",
        r#"{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"t4","persistent":false}}]}}"#,
        BOOL,
    ),
    (
        "transaction(\n  block-dirty-bitmap-add node=\"disk0\" name=t5\n)",
        r#"{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"t5"}}]}}"#,
        QUOTES,
    ),
    (
        "transaction(\n  block-dirty-bitmap-add node=disk0 name=123 granularity=64K\n)",
        r#"{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"123","granularity":65536}}]}}"#,
        "the schema types `name` (str: \"123\") and `granularity` (int: 64K is 65536)",
    ),
    ("transaction(\n  no-such-action x=1\n)", "refused", ENUM),
];

// Why qmpsh sends something else; GRAMMAR.md's compatibility section has each.
const QUOTES: &str = "qmpsh removes the quotes (and reads JSON escapes between double ones); qmp-shell sends them as \
     part of the string";
const DOTTED: &str = "qmp-shell's dotted-key bug: after a dotted key it nests every later key under that key's \
     parent (_cli_expr reuses `parent`); qmpsh nests each key by its own path";
const STR: &str = "the schema says str: qmpsh sends the text typed, where qmp-shell makes a number or boolean of it";
const INT: &str = "the schema says int: qmpsh reads sizes (1M) and hex (0x10), where qmp-shell sends strings";
const BOOL: &str = "the schema says bool: qmpsh reads on/off/yes/no, where qmp-shell sends strings";
const NOT_AN_INT: &str = "the schema says int, and this is not one: refused before sending";
const NOT_A_BOOL: &str = "the schema says bool, and this is not one: refused before sending";
const STR_OR_NULL: &str = "the schema says str or null: a bare null is null";
const ENUM: &str = "not one of the schema's enum values: refused before sending";
const PROPERTY_INT: &str = "the property is an integer (QEMU's qom-list or device-list-properties): qmpsh reads hex \
     (0x10), where qmp-shell sends a string QEMU refuses";
const PROPERTY_NOT_INT: &str = "the property is an integer, and this is not one: refused before sending";
const PROPERTY_BOOL: &str = "the property is a boolean: qmpsh reads on/off/yes/no, where qmp-shell sends a string \
     QEMU refuses";
const PROPERTY_STR: &str = "the property is a string: qmpsh sends the text typed, where qmp-shell makes a number of it \
     (which QEMU refuses, or on 7.2 keeps as other text)";
const UNKNOWN_ARGUMENT: &str = "the schema has no such argument: refused before sending";
const MISSING: &str = "a mandatory argument is missing: refused before sending";
const JSON_WITH_SPACES: &str =
    "qmpsh reads a JSON or Python value with spaces in it; qmp-shell splits it at the spaces and refuses the line";
const NOT_A_LITERAL: &str =
    "a [ or { value that is neither JSON nor a Python literal: qmpsh refuses it, qmp-shell sends the text";
const RAW_JSON: &str = "a line that is a JSON object is a raw QMP message in qmpsh; qmp-shell takes the whole object \
     as a command name";

/// One corpus entry: a line, or a transaction block of several.
struct Entry {
    /// Where it starts in corpus.txt (1-based).
    line: usize,
    text: String,
}

/// Something a tool printed: a message it sent, or any other line (an error).
enum Item {
    Sent(Value),
    Note(String),
}

/// What a tool did for one entry: the messages it sent (none when it refused
/// the line), and what else it said meanwhile.
#[derive(Clone, Default)]
struct Group {
    sent: Vec<Value>,
    notes: Vec<String>,
}

/// One group per entry; `None` where the entry's separator never came.
type Groups = Vec<Option<Group>>;

#[test]
fn every_corpus_line_sends_what_qmp_shell_sends_or_a_listed_difference() {
    let entries = corpus();
    let Some(program) = qmp_shell() else { return };
    let Some(theirs_qemu) = start_qemu() else { return };
    let Some(ours_qemu) = start_qemu() else { return };
    let stream = stream(&entries);

    let theirs = run_qmp_shell(&program, &theirs_qemu, &stream, entries.len());
    let ours = run_connected(&ours_qemu, &stream, entries.len());

    let mut problems = check_table(&entries);
    for (k, entry) in entries.iter().enumerate() {
        let theirs = theirs[k].as_ref().map(|g| g.sent.clone()).unwrap_or_default();
        if let Some(problem) = compare_with_qmp_shell(entry, &theirs, ours[k].as_ref()) {
            problems.push(problem);
        }
    }
    assert!(problems.is_empty(), "{}", report(&problems, entries.len(), "qmp-shell"));
}

#[test]
fn dry_run_with_the_saved_schema_prints_what_the_connected_run_sends() {
    let entries = corpus();
    let Some(qemu) = start_qemu() else { return };
    let schema = save_schema(&qemu);
    let stream = stream(&entries);

    let connected = run_connected(&qemu, &stream, entries.len());
    let schema_arg = schema.display().to_string();
    let dry = qmpsh(&["--dry-run", "--schema", &schema_arg, "--keep-going"], &stream);
    let items = dry.stdout.lines().map(|l| Item::Sent(normalize(parse_json(l, "qmpsh --dry-run"))));
    let dry_groups = split(items.collect(), entries.len());
    let dry_groups = nonempty(dry_groups, "qmpsh --dry-run --schema --keep-going", &dry);

    // A property's type (qom-set's value) only a QEMU can tell: --dry-run
    // says so and prints nothing, which is never a message the connected
    // run would not send.
    let untyped = offline_refusals(&dry.stderr, &entries);
    let mut problems = Vec::new();
    for (k, entry) in entries.iter().enumerate() {
        let (want, got) = (connected[k].as_ref(), dry_groups[k].as_ref());
        if untyped.contains(&k) && got.is_some_and(|g| g.sent.is_empty()) {
            continue;
        }
        if want.map(|g| &g.sent) != got.map(|g| &g.sent) {
            problems.push(format!(
                "{}\n  connected -v sends: {}\n  --dry-run prints:   {}",
                heading(entry),
                show(want),
                show(got)
            ));
        }
    }
    if !problems.is_empty() && !dry.stderr.is_empty() {
        problems.push(format!("--dry-run's stderr:\n{}", dry.stderr));
    }
    assert!(problems.is_empty(), "{}", report(&problems, entries.len(), "the connected run"));
}

// --- the corpus ---------------------------------------------------------------

/// The corpus entries, without comments and blank lines; checks that none
/// uses a forbidden command.
fn corpus() -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut open: Option<Entry> = None;
    for (index, line) in CORPUS.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(mut entry) = open.take() {
            entry.text = format!("{}\n{line}", entry.text);
            if closes_transaction(&words) {
                entries.push(entry);
            } else {
                open = Some(entry);
            }
            continue;
        }
        assert!(
            !FORBIDDEN.contains(&words[0]),
            "corpus.txt:{}: `{}` is not allowed in the corpus",
            index + 1,
            words[0]
        );
        let entry = Entry { line: index + 1, text: line.to_string() };
        match words.split_first() {
            Some((&"transaction(", rest)) if !closes_transaction(rest) => open = Some(entry),
            _ => entries.push(entry),
        }
    }
    if let Some(entry) = open {
        panic!("corpus.txt:{}: this transaction has no closing `)`", entry.line);
    }
    entries
}

/// Whether a transaction line closes the block, as qmp-shell sees it: `)`
/// first, or last after an action.
fn closes_transaction(words: &[&str]) -> bool {
    words.first() == Some(&")") || words.last() == Some(&")")
}

/// The input for both tools: each entry, then its separator.
fn stream(entries: &[Entry]) -> String {
    entries.iter().enumerate().map(|(k, e)| format!("{}\n{SEPARATOR} name={SEPARATOR_NAME}{k}*\n", e.text)).collect()
}

/// The entries --dry-run refused because it cannot know a property's type
/// offline, from the `line N` of its messages (each entry takes its own
/// lines of the stream, then a separator's).
fn offline_refusals(stderr: &str, entries: &[Entry]) -> std::collections::HashSet<usize> {
    let mut first = 1;
    let starts: Vec<usize> = entries
        .iter()
        .map(|e| {
            let start = first;
            first += e.text.lines().count().max(1) + 1;
            start
        })
        .collect();
    stderr
        .lines()
        .filter(|l| l.contains("cannot type `") && l.contains("without a QEMU"))
        .filter_map(|l| l.strip_prefix("error: line ")?.split(',').next()?.parse::<usize>().ok())
        .filter_map(|n| starts.iter().rposition(|start| *start <= n))
        .collect()
}

/// Which entry a sent message ends, if it is a separator.
fn separator_index(message: &Value) -> Option<usize> {
    if message["execute"] != SEPARATOR {
        return None;
    }
    message["arguments"]["name"].as_str()?.strip_prefix(SEPARATOR_NAME)?.strip_suffix('*')?.parse().ok()
}

/// Cuts a tool's output into one group per entry at the separators.
fn split(items: Vec<Item>, entries: usize) -> Groups {
    let mut groups: Groups = vec![None; entries];
    let mut current = Group::default();
    for item in items {
        match item {
            Item::Sent(message) => match separator_index(&message) {
                Some(k) if k < entries && groups[k].is_none() => groups[k] = Some(std::mem::take(&mut current)),
                _ => current.sent.push(message),
            },
            Item::Note(text) => current.notes.push(text),
        }
    }
    groups
}

// --- the tools ----------------------------------------------------------------

/// qmp-shell: `$QMP_SHELL`, else `qmp-shell` on PATH; when it is missing,
/// [`common::missing`] decides.
fn qmp_shell() -> Option<PathBuf> {
    let program = std::env::var_os("QMP_SHELL").filter(|p| !p.is_empty()).unwrap_or_else(|| "qmp-shell".into());
    let program = PathBuf::from(program);
    let runs = Command::new(&program).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if runs.is_ok_and(|s| s.success()) {
        return Some(program);
    }
    let install = "pip install qemu.qmp (in a venv), then put qmp-shell on PATH or set QMP_SHELL to it";
    common::missing(&format!("qmp-shell ({})", program.display()), install);
    None
}

/// A QEMU running MACHINE in a folder holding the corpus's files.
fn start_qemu() -> Option<Qemu> {
    Qemu::start_args(|dir| {
        for (name, size) in IMAGES {
            let file = File::create(dir.join(name)).expect("an image file in QEMU's folder");
            file.set_len(*size).expect("the image file takes its size");
        }
        MACHINE.iter().map(|a| a.to_string()).collect()
    })
}

/// `qmp-shell -v`: on stdout, after its prompt(s), each message it sends,
/// then the reply on a line of its own. Its errors go to stderr.
fn run_qmp_shell(program: &Path, qemu: &Qemu, stream: &str, entries: usize) -> Groups {
    let mut command = Command::new(program);
    command
        .args(["-v", &qemu.socket_arg()])
        .env("HOME", qemu.dir.path()) // its history file
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = finish(command, stream);
    let items = run.stdout.lines().filter_map(|line| {
        let rest = strip_prompts(line);
        rest.starts_with("{\"execute\"").then(|| Item::Sent(normalize(parse_json(rest, "qmp-shell -v"))))
    });
    let groups = nonempty(split(items.collect(), entries), "qmp-shell -v", &run);
    check_qmp_shell_groups(&groups, &run);
    groups
}

fn strip_prompts(mut line: &str) -> &str {
    while let Some(rest) = line.strip_prefix("(QEMU) ").or_else(|| line.strip_prefix("TRANS> ")) {
        line = rest;
    }
    line
}

/// Every entry must reach qmp-shell on its own and send at most one
/// message, or the corpus is at fault (an unclosed block, a line that
/// confuses qmp-shell), not qmpsh.
fn check_qmp_shell_groups(groups: &Groups, run: &Run) {
    let bad: Vec<String> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.as_ref().is_none_or(|g| g.sent.len() > 1))
        .map(|(k, g)| format!("entry {k}: {}", show(g.as_ref())))
        .collect();
    assert!(bad.is_empty(), "the corpus confuses qmp-shell:\n{}\nits stderr:\n{}", bad.join("\n"), run.stderr);
}

/// `qmpsh -v --show-secrets --keep-going`: on stderr, `-> ` and each
/// message it sends (with an `id`), and its errors as other lines. The
/// secrets of the corpus (a `secret` object's data, a VNC password) are
/// compared too, so `-v` shows them as sent instead of `"***"`.
fn run_connected(qemu: &Qemu, stream: &str, entries: usize) -> Groups {
    let run = finish(qmpsh_command(&["-v", "--show-secrets", "--keep-going", &qemu.socket_arg()]), stream);
    let items = run.stderr.lines().filter_map(|line| match line.strip_prefix("-> ") {
        Some(json) => {
            let message = normalize(parse_json(json, "qmpsh -v"));
            let internal = INTERNAL.iter().any(|name| message["execute"] == *name);
            (!internal).then_some(Item::Sent(message))
        }
        None => Some(Item::Note(line.to_string())),
    });
    nonempty(split(items.collect(), entries), "qmpsh -v --show-secrets --keep-going", &run)
}

/// The schema of `qemu`, saved as the user would: `qmpsh SOCK -c
/// query-qmp-schema > schema.json`.
fn save_schema(qemu: &Qemu) -> PathBuf {
    let run = qmpsh(&[&qemu.socket_arg(), "-c", "query-qmp-schema"], "");
    assert_eq!(run.code, 0, "saving the schema failed: {}", run.stderr);
    let path = qemu.dir.path().join("schema.json");
    std::fs::write(&path, &run.stdout).expect("schema.json is written");
    path
}

/// The groups, unless no separator at all came through: then the tool did
/// not run the stream, and one message says so instead of one per entry.
fn nonempty(groups: Groups, tool: &str, run: &Run) -> Groups {
    if groups.iter().all(Option::is_none) {
        panic!("{tool} ran none of the corpus (exit {}); its stderr:\n{}", run.code, run.stderr);
    }
    groups
}

// --- comparing ----------------------------------------------------------------

fn parse_json(text: &str, tool: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{tool} printed a message that is not JSON ({e}): {text}"))
}

/// A message as compared: without `id`, and with `arguments` even when empty
/// (qmp-shell always sends it, qmpsh leaves it out).
fn normalize(mut message: Value) -> Value {
    if let Some(object) = message.as_object_mut() {
        object.remove("id");
        if object.contains_key("execute") && !object.contains_key("arguments") {
            object.insert("arguments".into(), Value::Object(Map::new()));
        }
    }
    message
}

/// Every table entry must name a corpus entry and say what qmpsh sends in
/// a form the test reads.
fn check_table(entries: &[Entry]) -> Vec<String> {
    let mut problems = Vec::new();
    for (text, sends, _) in DIFFERENCES {
        if !entries.iter().any(|e| e.text == *text) {
            problems.push(format!("DIFFERENCES lists `{text}`, which is not in the corpus"));
        }
        if *sends != "refused" && serde_json::from_str::<Value>(sends).is_err() {
            problems.push(format!("DIFFERENCES says qmpsh sends `{sends}` for `{text}`: neither JSON nor `refused`"));
        }
    }
    problems
}

/// What qmpsh sends for a listed entry, as the table says.
fn listed(text: &str) -> Option<(Vec<Value>, &'static str)> {
    let (_, sends, reason) = DIFFERENCES.iter().find(|(t, _, _)| *t == text)?;
    let sent = match *sends {
        "refused" => Vec::new(),
        json => serde_json::from_str(json).map(|m| vec![normalize(m)]).unwrap_or_default(),
    };
    Some((sent, reason))
}

/// One entry's verdict: `None` when qmpsh sends what qmp-shell does, or what
/// the table says it sends instead.
fn compare_with_qmp_shell(entry: &Entry, theirs: &[Value], ours: Option<&Group>) -> Option<String> {
    let same = ours.is_some_and(|g| g.sent == theirs);
    let mut text = heading(entry);
    match listed(&entry.text) {
        None if same => return None,
        None => text += "\n  differs, and DIFFERENCES does not list it",
        Some(_) if same => text += "\n  DIFFERENCES lists it, but qmpsh now sends what qmp-shell does: drop the entry",
        Some((sent, _)) if ours.is_some_and(|g| g.sent == sent) => return None,
        Some((sent, reason)) => {
            let _ = write!(text, "\n  DIFFERENCES says qmpsh sends {} ({reason})", show_sent(&sent));
        }
    }
    let _ = write!(text, "\n  qmp-shell sends: {}\n  qmpsh sends:     {}", show_sent(theirs), show(ours));
    for note in ours.map(|g| g.notes.as_slice()).unwrap_or_default() {
        let _ = write!(text, "\n  qmpsh said:      {note}");
    }
    Some(text)
}

fn heading(entry: &Entry) -> String {
    format!("corpus.txt:{}: {}", entry.line, entry.text.replace('\n', "\n    "))
}

fn show(group: Option<&Group>) -> String {
    match group {
        None => "(lost: its separator never came through)".into(),
        Some(group) => show_sent(&group.sent),
    }
}

fn show_sent(sent: &[Value]) -> String {
    if sent.is_empty() {
        return "refused".into();
    }
    sent.iter().map(Value::to_string).collect::<Vec<_>>().join("  +  ")
}

fn report(problems: &[String], entries: usize, against: &str) -> String {
    format!(
        "{} problem(s) over {entries} corpus entries, against {against}:\n\n{}\n",
        problems.len(),
        problems.join("\n\n")
    )
}
