//! QOM property types, which decide how a value typed for a property is
//! read: `bootindex=010` is 8 for an `int32` property, `serial=0012345`
//! stays text for a `str` one. A device type's come from
//! `device-list-properties`, an object's from `qom-list` on its path, asked
//! once per connection; the recorded QEMUs carry their device types' (not
//! CPUs') for `--dry-run`. Object types need none: the schema types
//! `object_add` (`qom-list-properties` tells no more, and makes some QEMU
//! 7.2 builds abort).

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::language::qemu_text::Kind;

/// Whose properties a line's values are typed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A device type (`device_add e1000,...`).
    Device(String),
    /// The object at a QOM path (`qom-set /machine ...`).
    Object(String),
}

impl Owner {
    /// The QMP message that asks QEMU for them.
    pub fn question(&self) -> (&'static str, Map<String, Json>) {
        let mut arguments = Map::new();
        let command = match self {
            Owner::Device(name) => {
                arguments.insert("typename".into(), Json::String(name.clone()));
                "device-list-properties"
            }
            Owner::Object(path) => {
                arguments.insert("path".into(), Json::String(path.clone()));
                "qom-list"
            }
        };
        let mut message = Map::new();
        message.insert("execute".into(), Json::String(command.into()));
        message.insert("arguments".into(), Json::Object(arguments));
        (command, message)
    }
}

/// Property names and how each is read. A name not here is read as text
/// (QEMU refuses one the type does not have).
#[derive(Debug, Clone, Default)]
pub struct Properties {
    kinds: HashMap<String, Kind>,
}

impl Properties {
    /// From QEMU's answer: a list of `{"name": ..., "type": ...}`.
    pub fn from_list(list: &Json) -> Option<Properties> {
        let entries = list.as_array()?;
        let kind = |e: &Json| {
            let name = e.get("name")?.as_str()?;
            Some((name.to_string(), Kind::of_property(name, e.get("type")?.as_str()?)))
        };
        Some(Properties { kinds: entries.iter().filter_map(kind).collect() })
    }

    /// From a recorded line's `PROP=TYPE` words.
    pub fn from_recorded<'a>(words: impl Iterator<Item = &'a str>) -> Properties {
        let kind =
            |word: &'a str| word.split_once('=').map(|(name, ty)| (name.to_string(), Kind::of_property(name, ty)));
        Properties { kinds: words.filter_map(kind).collect() }
    }

    /// How a value for property `name` is read.
    pub fn kind(&self, name: &str) -> Kind {
        self.kinds.get(name).copied().unwrap_or(Kind::Text)
    }
}

/// The recorded device or object types' properties: `TYPE PROP=TYPE...` a
/// line.
pub fn recorded(text: &'static str) -> HashMap<&'static str, Properties> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, Properties::from_recorded(words)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_come_from_the_types_qemu_names() {
        let listed = json!([
            {"name": "bootindex", "type": "int32"},
            {"name": "serial", "type": "str"},
            {"name": "addr", "type": "int32"},
            {"name": "multifunction", "type": "bool"}
        ]);
        let properties = Properties::from_list(&listed).unwrap();
        assert_eq!(properties.kind("bootindex"), Kind::Int);
        assert_eq!(properties.kind("serial"), Kind::Text);
        assert_eq!(properties.kind("addr"), Kind::Text, "a PCI slot is read from text");
        assert_eq!(properties.kind("multifunction"), Kind::Bool);
        assert_eq!(properties.kind("nosuch"), Kind::Text);
        let recorded = recorded("e1000 bootindex=int32 rombar=uint32\nvirtio-rng-pci max-bytes=uint64\n");
        assert_eq!(recorded.get("e1000").map(|p| p.kind("rombar")), Some(Kind::Uint));
        assert_eq!(recorded.get("virtio-rng-pci").map(|p| p.kind("max-bytes")), Some(Kind::Uint));
        assert!(Properties::from_list(&json!({"error": {}})).is_none());
    }
}
