//! The live QMP schema from `query-qmp-schema`: which commands exist, what
//! arguments they take and of which types. Binding uses it to type values
//! (`id=123` stays a string for a `str` argument) and to refuse unknown
//! commands and arguments, bad enum values and missing arguments before
//! anything is sent.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::language::arguments::{Leaf, Node, Tree, parse_bool, parse_int, parse_number, untyped};
use crate::language::line::expected as error;
use crate::language::line::{ParseError, Value};
use crate::language::qemu_text::{self, Kind};
use crate::language::units::parse_size;

/// Schema entities by name.
#[derive(Debug, Default)]
pub struct Schema {
    entities: HashMap<String, Entity>,
}

/// One entity of the schema, by its `meta-type`. QEMU adds fields over
/// time (`features`, `ret-type`, `if`): those qmpsh does not read are
/// passed over, and so are entities of a meta-type it does not know
/// ([`Entity::Other`]).
#[derive(Debug)]
enum Entity {
    Command {
        /// None for a command without arguments.
        arg_type: Option<String>,
    },
    Event,
    Object(Object),
    Enum {
        values: Vec<String>,
    },
    /// The types a value may be of.
    Alternate {
        types: Vec<String>,
    },
    Array {
        element: Option<String>,
    },
    /// `int`, `str`, `any` ... with the JSON type they are written as.
    Builtin {
        json_type: Option<String>,
    },
    Other,
}

/// An object type: its members, and those that the value of its `tag`
/// member adds.
#[derive(Debug, Default)]
struct Object {
    members: Vec<Member>,
    tag: Option<String>,
    variants: Vec<Variant>,
}

/// One member of an object type.
#[derive(Debug, Deserialize)]
struct Member {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    /// A member with a `default` (always null) may be left out.
    #[serde(default, rename = "default", deserialize_with = "present")]
    optional: bool,
}

/// The members an object's tag value `case` adds: those of object `ty`.
#[derive(Debug, Deserialize)]
struct Variant {
    case: String,
    #[serde(rename = "type")]
    ty: String,
}

/// An entity as `query-qmp-schema` writes it: one record whose fields
/// depend on its meta-type, which [`Entity`] sorts out. A flat record
/// reads faster than serde's internally tagged enums, which buffer each
/// entity first.
#[derive(Deserialize)]
struct RawEntity {
    name: Option<String>,
    #[serde(rename = "meta-type")]
    meta: Option<Meta>,
    #[serde(rename = "arg-type")]
    arg_type: Option<String>,
    /// An object's members, an alternate's types, an enum's values again.
    #[serde(default)]
    members: Vec<RawMember>,
    tag: Option<String>,
    #[serde(default)]
    variants: Vec<Variant>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(rename = "element-type")]
    element_type: Option<String>,
    #[serde(rename = "json-type")]
    json_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Meta {
    Command,
    Event,
    Object,
    Enum,
    Alternate,
    Array,
    Builtin,
    #[serde(other)]
    Other,
}

/// A member of an object (name, type, maybe default), an alternate (type)
/// or an enum (name).
#[derive(Deserialize)]
struct RawMember {
    name: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    #[serde(default, rename = "default", deserialize_with = "present")]
    optional: bool,
}

/// A field that counts by being there, whatever its value.
fn present<'de, D: serde::Deserializer<'de>>(field: D) -> std::result::Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(field).map(|_| true)
}

impl From<RawEntity> for Named {
    fn from(raw: RawEntity) -> Named {
        let entity = raw.meta.map(|meta| match meta {
            Meta::Command => Entity::Command { arg_type: raw.arg_type },
            Meta::Event => Entity::Event,
            Meta::Object => Entity::Object(Object {
                members: raw
                    .members
                    .into_iter()
                    .filter_map(|m| Some(Member { name: m.name?, ty: m.ty?, optional: m.optional }))
                    .collect(),
                tag: raw.tag,
                variants: raw.variants,
            }),
            Meta::Enum => Entity::Enum { values: raw.values },
            Meta::Alternate => Entity::Alternate { types: raw.members.into_iter().filter_map(|m| m.ty).collect() },
            Meta::Array => Entity::Array { element: raw.element_type },
            Meta::Builtin => Entity::Builtin { json_type: raw.json_type },
            Meta::Other => Entity::Other,
        });
        Named { name: raw.name, entity }
    }
}

/// One item of `query-qmp-schema`'s list: an entity and its name. One
/// without either is none that a type can name.
#[derive(Deserialize)]
#[serde(from = "RawEntity")]
struct Named {
    name: Option<String>,
    entity: Option<Entity>,
}

/// Commands declared `'gen': false` in QAPI: the schema lists some of their
/// arguments, but they take any other (device_add: every device property).
const OPEN_COMMANDS: &[&str] = &["device_add"];

/// How deep type references are followed: QEMU's schema nests a few
/// levels; a peer whose schema refers to itself must not overflow the stack.
const MAX_DEPTH: usize = 32;

/// How many type references one walk through alternates follows in all.
/// QEMU's schema needs a handful. A depth limit alone is not enough there:
/// an alternate that lists itself (or another) twice doubles the paths at
/// each level, and a peer's schema doing so took time exponential in
/// [`MAX_DEPTH`]. The count also bounds the depth.
const MAX_STEPS: usize = 256;

/// A description is for a person, and typing a value may describe a type
/// at each step of its walk when it fails: a few references are enough.
const MAX_DESCRIBED: usize = 16;

/// The type references one walk may still follow.
struct Steps(usize);

impl Steps {
    fn new(budget: usize) -> Self {
        Steps(budget)
    }

    /// Counts one more; false once the budget is spent.
    fn take(&mut self) -> bool {
        let left = self.0.checked_sub(1);
        self.0 = left.unwrap_or(0);
        left.is_some()
    }
}

type Result<T> = std::result::Result<T, ParseError>;

impl Schema {
    /// Reads a schema saved from QEMU: the output of `qmpsh SOCK -c
    /// query-qmp-schema` (the `return` value, compact or pretty), or a
    /// whole reply `{"return": [...]}`.
    pub fn from_saved(text: &str) -> std::result::Result<Schema, String> {
        /// A whole reply, of which only the `return` counts.
        #[derive(Deserialize)]
        struct Reply {
            #[serde(rename = "return")]
            schema: Vec<Named>,
        }
        // Read straight into entities; one that does not read so is read
        // again as JSON, to say why.
        let typed = match text.trim_start().as_bytes().first() {
            Some(b'{') => serde_json::from_str::<Reply>(text).map(|reply| reply.schema),
            _ => serde_json::from_str::<Vec<Named>>(text),
        };
        let schema = match typed {
            Ok(items) => Schema::from_items(items),
            Err(_) => {
                let value: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
                let value = match value {
                    Json::Object(mut reply) if reply.contains_key("return") => {
                        reply.remove("return").unwrap_or_default()
                    }
                    other => other,
                };
                Schema::from_return(value)?
            }
        };
        if !schema.has_command("query-qmp-schema") {
            return Err("not a QMP schema: it has no query-qmp-schema command".into());
        }
        Ok(schema)
    }

    /// Reads the `return` of `query-qmp-schema`.
    pub fn from_return(value: Json) -> std::result::Result<Schema, String> {
        if !value.is_array() {
            return Err("query-qmp-schema did not return a list".into());
        }
        let items = Vec::<Named>::deserialize(value)
            .map_err(|e| format!("query-qmp-schema returned entities qmpsh cannot read: {e}"))?;
        Ok(Schema::from_items(items))
    }

    fn from_items(items: Vec<Named>) -> Schema {
        let entities = items.into_iter().filter_map(|item| Some((item.name?, item.entity?))).collect();
        Schema { entities }
    }

    fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.get(name)
    }

    pub fn has_command(&self, name: &str) -> bool {
        matches!(self.entity(name), Some(Entity::Command { .. }))
    }

    /// Every command name, in no particular order.
    pub fn command_names(&self) -> impl Iterator<Item = &str> {
        self.entities.iter().filter(|(_, e)| matches!(e, Entity::Command { .. })).map(|(name, _)| name.as_str())
    }

    fn arg_type(&self, command: &str) -> Option<&str> {
        match self.entity(command)? {
            Entity::Command { arg_type } => arg_type.as_deref(),
            _ => None,
        }
    }

    fn object(&self, ty: &str) -> Option<&Object> {
        match self.entity(ty)? {
            Entity::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The element type of array type `ty`.
    fn element(&self, ty: &str) -> Option<&str> {
        match self.entity(ty)? {
            Entity::Array { element } => element.as_deref(),
            _ => None,
        }
    }

    /// Members of object type `ty`, with those of the variant that the tag
    /// value in `given` selects.
    fn members(&self, ty: &str, given: Option<&Tree>) -> Vec<&Member> {
        self.members_at(ty, given, 0)
    }

    fn members_at(&self, ty: &str, given: Option<&Tree>, depth: usize) -> Vec<&Member> {
        if depth > MAX_DEPTH {
            return Vec::new();
        }
        let Some(object) = self.object(ty) else {
            return Vec::new();
        };
        let mut members: Vec<&Member> = object.members.iter().collect();
        let tag_value = object.tag.as_deref().and_then(|tag| match given?.get(tag)? {
            Node::Leaf { leaf: Leaf::Raw(value), .. } => value.text().map(str::to_string),
            Node::Leaf { leaf: Leaf::Opts(text), .. } => Some(text.clone()),
            Node::Leaf { leaf: Leaf::Typed(Json::String(s)), .. } => Some(s.clone()),
            _ => None,
        });
        if let Some(case) = tag_value
            && let Some(variant) = object.variants.iter().find(|v| v.case == case)
        {
            members.extend(self.members_at(&variant.ty, given, depth + 1));
        }
        members
    }

    /// Types the arguments of `command`; `end` is where a missing argument
    /// is reported.
    pub fn type_arguments(&self, command: &str, tree: Tree, end: usize) -> Result<Map<String, Json>> {
        let open = OPEN_COMMANDS.contains(&command);
        let Some(ty) = self.arg_type(command) else {
            // A command without arguments.
            return match tree.members.first() {
                Some((name, node)) => error(node.offset(), format!("no arguments: {command} takes none, not `{name}`")),
                None => Ok(Map::new()),
            };
        };
        self.type_object(ty, tree, "", open, end)
    }

    /// Types one action of a `transaction`: `name` must be an action QEMU
    /// knows, and `arguments` its data, as for a command.
    pub fn type_transaction_action(&self, name: &str, offset: usize, arguments: Tree, end: usize) -> Result<Json> {
        // transaction's `actions` is a list of a union tagged by `type`
        // whose variants hold the action's arguments in `data`.
        let action_type = self
            .arg_type("transaction")
            .and_then(|ty| self.members(ty, None).into_iter().find(|m| m.name == "actions"))
            .and_then(|m| self.element(&m.ty));
        let Some(action_type) = action_type else {
            return error(offset, "a QEMU whose schema has `transaction`");
        };
        let mut tag = Tree::default();
        tag.insert(&["type".to_string()], Leaf::Raw(Value::Bare(name.to_string())), offset)?;
        let members = self.members(action_type, Some(&tag));
        if let Some(kind) = members.iter().find(|m| m.name == "type") {
            let known = self.values_of(&kind.ty);
            if !known.iter().any(|k| k == name) {
                let hint = suggest(name, known.iter().map(String::as_str))
                    .map(|near| format!(" (did you mean `{near}`?)"))
                    .unwrap_or_default();
                return error(offset, format!("a transaction action QEMU knows, not `{name}`{hint}"));
            }
        }
        let data = members
            .iter()
            .find(|m| m.name == "data")
            .and_then(|m| self.object_in(&m.ty))
            .map(|object| self.type_object(object, arguments, "", false, end))
            .transpose()?
            .unwrap_or_default();
        let mut action = Map::new();
        action.insert("type".into(), Json::String(name.to_string()));
        action.insert("data".into(), Json::Object(data));
        Ok(Json::Object(action))
    }

    fn type_object(&self, ty: &str, tree: Tree, prefix: &str, open: bool, end: usize) -> Result<Map<String, Json>> {
        let members = self.members(ty, Some(&tree));
        let mut out = Map::new();
        for (name, node) in tree.members {
            let path = format!("{prefix}{name}");
            let value = match members.iter().find(|m| m.name == name) {
                Some(member) => self.type_node(&member.ty, node, &path, end)?,
                None if open => node.into_untyped(),
                None => {
                    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                    let hint = match suggest(&name, names.iter().copied()) {
                        Some(near) => format!(" (did you mean `{prefix}{near}`?)"),
                        None if names.is_empty() => String::new(),
                        None => format!(" (it takes {})", names.join(", ")),
                    };
                    return error(node.offset(), format!("a known argument, not `{path}`{hint}"));
                }
            };
            out.insert(name, value);
        }
        for member in members.iter().filter(|m| !m.optional) {
            if !out.contains_key(&member.name) {
                return error(end, format!("argument `{prefix}{}` ({})", member.name, self.describe(&member.ty)));
            }
        }
        Ok(out)
    }

    fn type_node(&self, ty: &str, node: Node, path: &str, end: usize) -> Result<Json> {
        match node {
            Node::Leaf { leaf: Leaf::Raw(Value::Json(json)), .. } => Ok(json),
            // Typed by the table (a human form): QMP's type must agree, so
            // `set_password 0 x` is refused rather than sent with protocol "0".
            Node::Leaf { leaf: Leaf::Typed(json), offset } => {
                let written = match &json {
                    Json::String(text) => Value::Quoted(text.clone()),
                    Json::Number(number) => Value::Bare(number.to_string()),
                    Json::Bool(on) => Value::Bare(on.to_string()),
                    _ => return Ok(json),
                };
                match self.type_value(ty, &written) {
                    Ok(_) => Ok(json),
                    Err(expected) => {
                        error(offset, format!("{expected} for `{path}`, not `{}`", written.text().unwrap_or_default()))
                    }
                }
            }
            Node::Leaf { leaf: Leaf::Raw(value), offset } => self.type_value(ty, &value).or_else(|expected| {
                let text = value.text().unwrap_or_default();
                error(offset, format!("{expected} for `{path}`, not `{text}`"))
            }),
            Node::Leaf { leaf: Leaf::Opts(text), offset } => self
                .type_opts_item(ty, &text)
                .or_else(|expected| error(offset, format!("{expected} for `{path}`, not `{text}`"))),
            Node::Leaf { leaf: Leaf::OptsList(texts), offset } => self
                .type_opts_items(ty, &texts)
                .or_else(|expected| error(offset, format!("{expected} for `{path}`, not `{}`", texts.join("`, `")))),
            Node::Branch { tree, offset } => match self.object_in(ty) {
                Some(object) => self.type_object(object, tree, &format!("{path}."), false, end).map(Json::Object),
                // An open value (`any`) may be an object, built as qmp-shell builds it.
                None if self.is_open(ty) => Ok(Json::Object(tree.into_untyped())),
                None => error(offset, format!("a single value for `{path}` ({}), not sub-keys", self.describe(ty))),
            },
        }
    }

    /// A QemuOpts item's text as type `ty`. QemuOpts has no lists: where
    /// one is wanted, the item is a list of one, and QEMU's `String`
    /// wrapper (`{"str": ...}`, as in `netdev_add user,hostfwd=...`) takes
    /// the text.
    fn type_opts_item(&self, ty: &str, text: &str) -> std::result::Result<Json, String> {
        self.type_opts_items(ty, std::slice::from_ref(&text.to_string()))
    }

    /// QemuOpts items given for one key (a key given twice is a list, as
    /// QEMU's command line has it: `hostfwd=...,hostfwd=...`), as type
    /// `ty`. Where a list is wanted, each item is one element.
    fn type_opts_items(&self, ty: &str, texts: &[String]) -> std::result::Result<Json, String> {
        let Some(element) = self.element(ty) else {
            return match texts {
                [text] => self.type_opts_scalar(ty, text),
                _ => Err(format!("one value ({} takes no list)", self.describe(ty))),
            };
        };
        let wrapper = self.object_in(element).map(|object| self.members(object, None));
        let item = |text: &String| match wrapper.as_deref() {
            Some([only]) if only.name == "str" => {
                let mut object = Map::new();
                object.insert("str".into(), Json::String(text.clone()));
                Ok(Json::Object(object))
            }
            _ => self.type_opts_scalar(element, text),
        };
        texts.iter().map(item).collect::<std::result::Result<Vec<_>, _>>().map(Json::Array)
    }

    /// One QemuOpts value as QEMU reads it for a scalar of type `ty`:
    /// numbers in C's base 0 (`010` is 8), sizes with suffixes and
    /// fractions, `on`/`off` (`yes`/`no`, `true`/`false`, `y`/`n`); enums
    /// and other types as any typed value.
    fn type_opts_scalar(&self, ty: &str, text: &str) -> std::result::Result<Json, String> {
        match self.entity(ty) {
            Some(Entity::Builtin { json_type }) if !matches!(json_type.as_deref(), Some("value" | "null")) => {
                let kind = Kind::of_property("", ty);
                // The schema shows sizes as `int` too: `size=1.5M` is one.
                // Only `010` (8 as a number, 10 as a size) and `08` (a size
                // only) could mean two things: refused rather than guessed.
                let size = || qemu_text::strtosz(text, 1).and_then(|n| i64::try_from(n).ok()).map(Json::from);
                let digits = text.strip_prefix(['+', '-']).unwrap_or(text).as_bytes();
                let leading_zero = matches!(digits, [b'0', next, ..] if next.is_ascii_digit());
                match kind.read(text) {
                    _ if kind == Kind::Int && leading_zero => Err(format!(
                        "a number without a leading 0 (QEMU reads `{text}` as octal where it wants a number, as \
                         decimal where it wants a size, and the schema does not say which this is)"
                    )),
                    Err(_) if kind == Kind::Int => {
                        size().ok_or_else(|| "an integer or a size such as 1.5M".to_string())
                    }
                    read => read.map_err(str::to_string),
                }
            }
            _ => self.type_value(ty, &Value::Bare(text.to_string())),
        }
    }

    /// The object type `ty` is, or (for an alternate) has among its members.
    fn object_in<'s>(&'s self, ty: &'s str) -> Option<&'s str> {
        self.object_in_at(ty, &mut Steps::new(MAX_STEPS))
    }

    fn object_in_at<'s>(&'s self, ty: &'s str, steps: &mut Steps) -> Option<&'s str> {
        if !steps.take() {
            return None;
        }
        match self.entity(ty)? {
            Entity::Object(_) => Some(ty),
            Entity::Alternate { types } => types.iter().find_map(|t| self.object_in_at(t, steps)),
            _ => None,
        }
    }

    /// A written value as type `ty`, or what was expected instead.
    fn type_value(&self, ty: &str, value: &Value) -> std::result::Result<Json, String> {
        self.type_value_at(ty, value, &mut Steps::new(MAX_STEPS), true)
    }

    /// `explain`: whether a failure needs its message. An alternate drops
    /// the failures of the types it tries, and describing a type for each
    /// (a walk of its own) at every step of a long walk cost a walk a step.
    fn type_value_at(
        &self,
        ty: &str,
        value: &Value,
        steps: &mut Steps,
        explain: bool,
    ) -> std::result::Result<Json, String> {
        let describe = |ty: &str| if explain { self.describe(ty) } else { String::new() };
        if !steps.take() {
            return Err(format!("a value of type {ty} (the schema nests too deep)"));
        }
        let text = value.text().unwrap_or_default();
        let quoted = matches!(value, Value::Quoted(_));
        let Some(entity) = self.entity(ty) else {
            return Ok(untyped(value));
        };
        match entity {
            Entity::Builtin { json_type } => match json_type.as_deref().unwrap_or("value") {
                "string" => Ok(Json::String(text.to_string())),
                "int" if !quoted => parse_int(text)
                    .map(Json::from)
                    .or_else(|| parse_size(text, 1).map(Json::from))
                    .ok_or_else(|| "an integer".to_string()),
                "number" if !quoted => parse_number(text).ok_or_else(|| "a number".to_string()),
                "boolean" if !quoted => {
                    parse_bool(text).map(Json::Bool).ok_or_else(|| "true or false (or on/off, yes/no)".to_string())
                }
                "null" if !quoted && text == "null" => Ok(Json::Null),
                "value" => Ok(untyped(value)),
                _ => Err(format!("a value of type {}", describe(ty))),
            },
            Entity::Enum { values } => {
                if values.iter().any(|v| v == text) {
                    return Ok(Json::String(text.to_string()));
                }
                match suggest(text, values.iter().map(String::as_str)) {
                    Some(near) => Err(format!("`{near}`")),
                    None => Err(format!("one of {}", describe(ty))),
                }
            }
            Entity::Alternate { types } => {
                // A quoted value is meant as a string; a bare one tries the
                // other types first, so `null` and numbers mean themselves.
                let mut order: Vec<&str> = types.iter().map(String::as_str).collect();
                order.sort_by_key(|t| (self.is_string_like(t) != quoted) as u8);
                order
                    .iter()
                    .find_map(|t| self.type_value_at(t, value, steps, false).ok())
                    .ok_or_else(|| format!("a value of type {}", describe(ty)))
            }
            Entity::Array { .. } => Err(format!("a JSON array ({})", describe(ty))),
            Entity::Object(_) => Err("a JSON object or dotted keys".to_string()),
            Entity::Command { .. } | Entity::Event | Entity::Other => Ok(untyped(value)),
        }
    }

    /// Whether `ty` leaves the value open: `any`, or a type the schema does
    /// not describe.
    fn is_open(&self, ty: &str) -> bool {
        match self.entity(ty) {
            Some(Entity::Builtin { json_type }) => json_type.as_deref() == Some("value"),
            Some(_) => false,
            None => true,
        }
    }

    fn is_string_like(&self, ty: &str) -> bool {
        match self.entity(ty) {
            Some(Entity::Builtin { json_type }) => json_type.as_deref() == Some("string"),
            Some(Entity::Enum { .. }) => true,
            _ => false,
        }
    }

    /// A short description of a type: `string` (QAPI's `str`, as the
    /// table calls it), `a|b`, `array of int`.
    pub fn describe(&self, ty: &str) -> String {
        self.describe_at(ty, &mut Steps::new(MAX_DESCRIBED))
    }

    fn describe_at(&self, ty: &str, steps: &mut Steps) -> String {
        if !steps.take() {
            return "...".into();
        }
        // The word the table's hints use for the same type.
        if ty == "str" {
            return "string".into();
        }
        match self.entity(ty) {
            Some(Entity::Builtin { .. }) => ty.to_string(),
            Some(Entity::Enum { values }) => {
                if values.len() <= 8 {
                    values.join("|")
                } else {
                    let first: Vec<&str> = values.iter().take(6).map(String::as_str).collect();
                    format!("{}|... ({} values)", first.join("|"), values.len())
                }
            }
            Some(Entity::Array { element }) => {
                format!("array of {}", self.describe_at(element.as_deref().unwrap_or("?"), steps))
            }
            Some(Entity::Alternate { types }) => {
                types.iter().map(|t| self.describe_at(t, steps)).collect::<Vec<_>>().join(" or ")
            }
            Some(Entity::Object(_)) => "object".to_string(),
            _ => ty.to_string(),
        }
    }

    /// `.schema CMD`: the arguments, their types, and which are optional.
    pub fn describe_command(&self, command: &str) -> Option<String> {
        if !self.has_command(command) {
            return None;
        }
        let mut text = format!("{command}\n");
        let Some(ty) = self.arg_type(command) else {
            text.push_str("  (no arguments)\n");
            return Some(text);
        };
        let members = self.members(ty, None);
        if members.is_empty() {
            text.push_str("  (no arguments)\n");
        }
        for m in &members {
            let optional = if m.optional { " (optional)" } else { "" };
            text.push_str(&format!("  {}: {}{optional}\n", m.name, self.describe(&m.ty)));
        }
        if let Some(tag) = self.object(ty).and_then(|object| object.tag.as_deref()) {
            text.push_str(&format!("  ...and the members of the variant that `{tag}` selects\n"));
        }
        Some(text)
    }

    /// Arguments of `command` for completion and hints: name, type as
    /// shown, and whether it is optional.
    pub fn arguments(&self, command: &str) -> Vec<(String, String, bool)> {
        let Some(ty) = self.arg_type(command) else { return Vec::new() };
        self.members(ty, None).iter().map(|m| (m.name.clone(), self.describe(&m.ty), m.optional)).collect()
    }

    /// Whether `command` takes an argument `name`: one of its members (a
    /// variant's too), or any at all for a command that takes any
    /// (`device_add`); `true` for a command the schema does not know.
    pub fn takes_argument(&self, command: &str, name: &str) -> bool {
        let Some(ty) = self.arg_type(command) else { return !self.has_command(command) };
        // A union's variants each add members: any of them will do.
        let variants = self.object(ty).map(|object| object.variants.as_slice()).unwrap_or_default();
        let variant_has = |v: &Variant| self.members(&v.ty, None).iter().any(|m| m.name == name);
        OPEN_COMMANDS.contains(&command)
            || self.members(ty, None).iter().any(|m| m.name == name)
            || variants.iter().any(variant_has)
    }

    /// The values an argument can take, when they are few: an enum's
    /// values, or true/false.
    pub fn argument_values(&self, command: &str, argument: &str) -> Vec<String> {
        let Some(ty) = self.arg_type(command) else { return Vec::new() };
        let members = self.members(ty, None);
        let Some(member) = members.iter().find(|m| m.name == argument) else { return Vec::new() };
        self.values_of(&member.ty)
    }

    fn values_of(&self, ty: &str) -> Vec<String> {
        self.values_at(ty, &mut Steps::new(MAX_STEPS))
    }

    fn values_at(&self, ty: &str, steps: &mut Steps) -> Vec<String> {
        if !steps.take() {
            return Vec::new();
        }
        match self.entity(ty) {
            Some(Entity::Enum { values }) => values.clone(),
            Some(Entity::Builtin { json_type }) if json_type.as_deref() == Some("boolean") => {
                vec!["true".into(), "false".into()]
            }
            Some(Entity::Alternate { types }) => types.iter().flat_map(|t| self.values_at(t, steps)).collect(),
            _ => Vec::new(),
        }
    }

    /// Every event name, for `.wait` completion.
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        self.entities.iter().filter(|(_, e)| matches!(e, Entity::Event)).map(|(name, _)| name.as_str())
    }
}

/// The candidate closest to `word`, if any is close enough to be a typo.
/// One that completes what was typed comes first, the shortest such
/// (`query-statu` means `query-status`, not `query-stats`; `query-cpus`
/// means `query-cpus-fast`); then the fewest edits; then the nearest in
/// length. A word longer than any name gets no suggestion, and
/// only candidates near its length are compared, so a pasted screenful
/// costs no more than a typo.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let length = word.chars().count();
    if length > LONGEST_NAME {
        return None;
    }
    let limit = (length / 3).max(2);
    // Case is not a difference worth an edit: `QUERY-STATUS` is `query-status`.
    let lower = word.to_lowercase();
    candidates
        .filter(|c| *c != word)
        .filter_map(|c| {
            let apart = c.chars().count().abs_diff(length);
            let candidate = c.to_lowercase();
            // Three letters or more that start a name point at it however
            // much is left to type (`query-cpus` → `query-cpus-fast`).
            let completes = length >= 3 && candidate.starts_with(&lower);
            if completes {
                return Some((false, apart, apart, c));
            }
            if apart > limit {
                return None;
            }
            // Swapping two neighbours is one edit (optimal string alignment).
            let edits = strsim::osa_distance(&lower, &candidate);
            (edits <= limit).then_some((true, edits, apart, c))
        })
        .min()
        .map(|(_, _, _, c)| c)
}

/// Longer than any QMP, HMP or qmpsh name.
const LONGEST_NAME: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_that_refers_to_itself_is_survived() {
        let schema = Schema::from_return(serde_json::json!([
            {"name": "foo", "meta-type": "command", "arg-type": "A"},
            {"name": "A", "meta-type": "object", "members": [{"name": "v", "type": "ALT"}, {"name": "w", "type": "[L]"}],
             "tag": "v", "variants": [{"case": "x", "type": "A"}]},
            {"name": "ALT", "meta-type": "alternate", "members": [{"type": "ALT"}]},
            {"name": "[L]", "meta-type": "array", "element-type": "[L]"}
        ]))
        .unwrap();
        assert!(schema.describe_command("foo").is_some());
        let mut tree = Tree::default();
        tree.insert(&["v".to_string()], Leaf::Raw(Value::Bare("x".into())), 0).unwrap();
        assert!(schema.type_arguments("foo", tree, 0).is_err());
        assert!(schema.argument_values("foo", "v").is_empty());
    }

    /// The entities are read into types: fields qmpsh does not read, a
    /// meta-type it does not know and an entity without a name are passed
    /// over; a member with a `default` (null) is optional.
    #[test]
    fn saved_schemas_read_in_either_shape() {
        let list = r#"[{"name": "query-qmp-schema", "meta-type": "command", "ret-type": "x", "allow-oob": false},
            {"name": "eject", "meta-type": "command", "arg-type": "E", "features": ["deprecated"]},
            {"name": "E", "meta-type": "object", "members": [{"name": "id", "type": "str", "default": null},
                {"name": "force", "type": "bool"}]},
            {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
            {"name": "later", "meta-type": "a-kind-qemu-adds-one-day"},
            {"meta-type": "event"}]"#;
        for text in [list.to_string(), format!(r#"{{"return": {list}, "id": 1}}"#)] {
            let schema = Schema::from_saved(&text).unwrap();
            assert_eq!(
                schema.arguments("eject"),
                [("id".to_string(), "string".to_string(), true), ("force".into(), "bool".into(), false)]
            );
            assert_eq!(schema.argument_values("eject", "force"), ["true", "false"]);
            assert_eq!(schema.event_names().count(), 0);
        }
        let wrong = r#"[{"name": "query-qmp-schema", "meta-type": "command", "members": 3}]"#;
        assert!(Schema::from_saved(wrong).unwrap_err().contains("cannot read"));
        assert!(Schema::from_saved("[1,").unwrap_err().starts_with("not JSON: "));
        assert_eq!(Schema::from_saved(r#"{"return": 1}"#).unwrap_err(), "query-qmp-schema did not return a list");
    }

    #[test]
    fn a_word_longer_than_any_name_gets_no_suggestion() {
        let pasted = "query-status".repeat(100_000);
        assert_eq!(suggest(&pasted, ["query-status", "stop"].into_iter()), None);
        let near_limit = format!("{}x", "a".repeat(LONGEST_NAME - 1));
        assert_eq!(suggest(&near_limit, [&near_limit[1..]].into_iter()), Some(&near_limit[1..]));
    }

    /// Alternates that list each other twice: 40 levels of them have 2^40
    /// paths; with a depth limit alone, describing or typing one did not
    /// finish in a minute (found by the `schema` fuzz target).
    #[test]
    fn alternates_listed_twice_are_walked_in_bounded_time() {
        let mut entities = vec![
            serde_json::json!({"name": "foo", "meta-type": "command", "arg-type": "A"}),
            serde_json::json!({"name": "A", "meta-type": "object", "members": [{"name": "v", "type": "ALT0"}]}),
            serde_json::json!({"name": "ALT40", "meta-type": "alternate", "members": [{"type": "ALT0"}, {"type": "ALT0"}]}),
        ];
        for level in 0..40 {
            let next = format!("ALT{}", level + 1);
            entities.push(serde_json::json!({"name": format!("ALT{level}"), "meta-type": "alternate",
                "members": [{"type": next}, {"type": next}]}));
        }
        let schema = Schema::from_return(Json::Array(entities)).unwrap();
        assert!(schema.describe_command("foo").unwrap().len() < 64 * MAX_STEPS);
        assert!(schema.argument_values("foo", "v").is_empty());
        for value in ["1", "{}"] {
            let mut tree = Tree::default();
            tree.insert(&["v".to_string()], Leaf::Raw(Value::Bare(value.into())), 4).unwrap();
            let err = schema.type_arguments("foo", tree, 0).unwrap_err();
            assert!(err.message.contains("a value of type"), "{err:?}");
        }
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let names = ["query-status", "query-name", "stop"];
        assert_eq!(suggest("query-stauts", names.into_iter()), Some("query-status"));
        let with_stats = ["query-stats", "query-status"];
        assert_eq!(suggest("query-stauts", with_stats.into_iter()), Some("query-status"));
        assert_eq!(suggest("stpo", names.into_iter()), Some("stop"));
        assert_eq!(suggest("query-statu", with_stats.into_iter()), Some("query-status"));
        assert_eq!(suggest("query-stat", with_stats.into_iter()), Some("query-stats"));
        assert_eq!(suggest("migrate", names.into_iter()), None);
        // A longer completion still beats a near miss of the same length.
        let cpus = ["query-cpus-fast", "query-jobs", "query-named-block-nodes"];
        assert_eq!(suggest("query-cpus", cpus.into_iter()), Some("query-cpus-fast"));
        assert_eq!(suggest("query-named-block", cpus.into_iter()), Some("query-named-block-nodes"));
        assert_eq!(suggest("null", ["null-aio", "null-co", "file"].into_iter()), Some("null-co"));
        assert_eq!(suggest("q", ["quit", "query-status"].into_iter()), None, "one letter names nothing");
        // Case costs nothing.
        assert_eq!(suggest("QUERY-STATUS", names.into_iter()), Some("query-status"));
        assert_eq!(suggest("Query-Stauts", names.into_iter()), Some("query-status"));
    }
}
