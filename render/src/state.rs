//! A rendered state file → its declarations, in Salt's structure:
//!
//! ```yaml
//! include: [coins.base]        # other state files this one needs (applied before it)
//! extend:                      # change states of those files: arguments replaced,
//!   redis:                     # requisites added
//!     daemon.running:
//!       - watch: [{file: redis-config}]
//! worker:                      # state id, unique across the files applied to a minion
//!   daemon.running:            # module.function (or `daemon:` with `- running` in the list)
//!     - cmd: [/usr/local/bin/coins, worker]
//!     - watch:
//!       - file: worker-config  # requisite: module: state id (or `sls: <state file>`)
//! ```
//!
//! One id may hold several functions of different modules (`file.managed` and
//! `daemon.running` under `worker`); each is its own resource. Arguments are read into a
//! typed [`Function`] only once every `extend:` of the plan is merged ([`Raw::read`]).
use serde_yaml::{Mapping, Value};

use crate::args::{Arg, Args};
use crate::diag::{Diagnostic, finish, guard};
use crate::function::{self, Function, MODULES, REQUISITES, SPECS, Spec};
use crate::locate::{Loc, Text};
use crate::path::StateId;
use crate::plan::RequisiteKind;

/// The top-level keys that are not state ids (Salt's).
const INCLUDE: &str = "include";
const EXTEND: &str = "extend";

/// What one state file declares.
#[derive(Default)]
pub(crate) struct StateFile {
    pub(crate) includes: Vec<Include>,
    pub(crate) extensions: Vec<Extension>,
    pub(crate) raws: Vec<Raw>,
}

/// `include: [coins.base]`: one item, where it is written.
pub(crate) struct Include {
    pub(crate) state: StateId,
    pub(crate) at: Loc,
}

/// One function under one state id, its arguments as written (requisites already taken).
pub(crate) struct Raw {
    pub(crate) id: String,
    pub(crate) spec: &'static Spec,
    pub(crate) args: Vec<Arg>,
    pub(crate) requisites: Vec<Written>,
    /// Where the state id is.
    pub(crate) at: Loc,
    /// Where the function key is.
    pub(crate) function_at: Loc,
}

/// One function under one id of `extend:`: its arguments replace the state's, its
/// requisites are added to the state's.
pub(crate) struct Extension {
    pub(crate) id: String,
    pub(crate) module: String,
    /// `None` for the module alone (`daemon:`), as Salt writes it.
    pub(crate) function: Option<String>,
    pub(crate) args: Vec<Arg>,
    pub(crate) requisites: Vec<Written>,
    /// Where the id is, under `extend:`.
    pub(crate) at: Loc,
    /// Where the function key is.
    pub(crate) function_at: Loc,
}

/// One function under one state id, ready to plan.
pub(crate) struct Declared {
    pub(crate) id: String,
    pub(crate) function: Function,
    pub(crate) requisites: Vec<Written>,
    /// Where the state id is.
    pub(crate) at: Loc,
}

/// A requisite as written: `- file: worker-config`, `- sls: coins.base`, `- worker`.
pub(crate) struct Written {
    pub(crate) kind: RequisiteKind,
    /// Written as `<kind>_in` on the prerequisite: the targets depend on this state.
    pub(crate) incoming: bool,
    /// `None` for a bare id (any module).
    pub(crate) module: Option<String>,
    pub(crate) target: String,
    pub(crate) at: Loc,
}

impl Written {
    /// `require` or `require_in`, as written.
    pub(crate) fn key(&self) -> String {
        if self.incoming { format!("{}_in", self.kind) } else { self.kind.to_string() }
    }
}

impl Raw {
    /// Merge `extension` into this state (Salt's `extend`): each argument replaces the one
    /// of the same name, each requisite is added.
    pub(crate) fn extend(&mut self, extension: Extension) {
        for arg in extension.args {
            self.args.retain(|a| a.key != arg.key);
            self.args.push(arg);
        }
        self.requisites.extend(extension.requisites);
    }

    /// Read the arguments into the typed function; `None` when they are wrong (reported).
    pub(crate) fn read(self, diags: &mut Vec<Diagnostic>) -> Option<Declared> {
        let Raw { id, spec, args, requisites, at, function_at } = self;
        let mut args = Args::new(spec.name.to_string(), id.clone(), function_at, args, diags);
        let parsed = function::parse(spec, &mut args);
        let allowed: Vec<&str> = spec.args.iter().chain(REQUISITES.iter()).copied().collect();
        args.finish(&allowed);
        parsed.map(|function| Declared { id, function, requisites, at })
    }
}

/// Parse `rendered`, the output of the template `template` (the contents of `file`).
pub(crate) fn declarations(file: &str, template: &str, rendered: &str) -> Result<StateFile, Vec<Diagnostic>> {
    let text = Text::rendered(file, template, rendered);
    let value = guard(file, "parsing", || serde_yaml::from_str::<Value>(rendered))
        .map_err(|d| vec![d])?
        .map_err(|e| vec![text.yaml_error(&e)])?;
    let map =
        match value {
            Value::Null => return Ok(StateFile::default()),
            Value::Mapping(map) => map,
            other => {
                return Err(vec![text.start().diag(format!(
                    "expected a map of state ids to state functions, got {}",
                    describe(&other)
                ))]);
            }
        };
    let mut diags = Vec::new();
    let mut parsed = StateFile::default();
    for (key, body) in map {
        let id = match key {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                diags.push(text.start().diag(format!("expected a state id, got {}", describe(&other))));
                continue;
            }
        };
        let line = text.top_key(&id).unwrap_or(0);
        let at = text.at(line, 0);
        if id.trim().is_empty() || id.contains(char::is_control) {
            diags.push(at.diag("expected a state id, got an empty or unprintable one"));
            continue;
        }
        let block = Block { text: &text, start: line, end: text.block_end(line) };
        match (id.as_str(), body) {
            (INCLUDE, body) => parsed.includes.extend(includes(&text, &at, body, &mut diags)),
            (EXTEND, Value::Mapping(ids)) => extensions(&block, ids, &mut parsed.extensions, &mut diags),
            (EXTEND, other) => diags.push(at.diag(format!(
                "`extend`: expected a map of state ids to the functions and arguments to change, got {}",
                describe(&other)
            ))),
            (_, Value::Mapping(functions)) if !functions.is_empty() => {
                parse_id(&block, &id, &at, functions, &mut parsed.raws, &mut diags);
            }
            (_, other) => diags.push(at.diag(format!(
                "state `{id}`: expected state functions such as `file.managed:` under it, got {}",
                describe(&other)
            ))),
        }
    }
    diags.sort_by_key(|d| (d.line, d.col));
    finish(parsed, diags)
}

/// `include: [a.b, web]` (or nothing).
fn includes(text: &Text, at: &Loc, body: Value, diags: &mut Vec<Diagnostic>) -> Vec<Include> {
    let items = match body {
        Value::Null => return Vec::new(),
        Value::Sequence(items) => items,
        other => {
            diags.push(at.diag(format!(
                "`include`: expected a list of state files such as `[coins.base]`, got {}",
                describe(&other)
            )));
            return Vec::new();
        }
    };
    let places = text.child_key(None, INCLUDE).map(|key| text.items(key)).unwrap_or_default();
    let mut found = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let here = places.get(i).map_or_else(|| at.clone(), |&(line, col)| text.at(line, col));
        let name = match item {
            Value::String(name) => name,
            other => {
                diags.push(here.diag(format!(
                    "`include`: expected a state file such as `coins.base`, got {}",
                    describe(&other)
                )));
                continue;
            }
        };
        if name.starts_with('.') {
            diags.push(here.diag(format!(
                "`include`: `{name}` is relative, which is not supported; expected the full state id \
                 such as `coins.base`"
            )));
            continue;
        }
        match StateId::parse(&name) {
            Ok(state) => found.push(Include { state, at: here }),
            Err(message) => diags.push(here.diag(format!("`include`: {message}"))),
        }
    }
    found
}

/// `extend: {worker: {daemon.running: [...]}}`.
fn extensions(block: &Block, ids: Mapping, found: &mut Vec<Extension>, diags: &mut Vec<Diagnostic>) {
    let mut cursor = block.start + 1;
    for (key, functions) in ids {
        let id = match key {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                let at = block.text.at(block.start, 0);
                diags.push(at.diag(format!("`extend`: expected a state id, got {}", describe(&other))));
                continue;
            }
        };
        let at = block.find(&mut cursor, &id);
        let Value::Mapping(functions) = functions else {
            diags.push(at.diag(format!(
                "`extend`: state `{id}`: expected the functions to change such as `daemon.running:` \
                 under it, got {}",
                describe(&functions)
            )));
            continue;
        };
        for (key, items) in functions {
            let Value::String(key) = key else {
                diags.push(at.diag(format!(
                    "`extend`: state `{id}`: expected a function name, got {}",
                    describe(&key)
                )));
                continue;
            };
            let key_at = block.find(&mut cursor, &key);
            let (module, function) = match key.split_once('.') {
                Some((module, function)) => (module.to_string(), Some(function.to_string())),
                None => (key.clone(), None),
            };
            let Some(listed) = arguments(block, &id, &key, &key_at, items, &mut cursor, diags) else {
                continue;
            };
            let name = format!("`extend` of `{id}`");
            let mut args = listed.items;
            let mut requisites = Vec::new();
            for (kind, incoming) in requisite_keys() {
                requisites.extend(take_requisites(block, &name, &mut args, kind, incoming, diags));
            }
            let function = function.or(listed.function);
            found.push(Extension {
                id: id.clone(),
                module,
                function,
                args,
                requisites,
                at: at.clone(),
                function_at: key_at,
            });
        }
    }
}

/// The list under one function key: its arguments, and the function when Salt's other
/// spelling gives it as a bare word (`file: [managed, {name: /x}]`).
struct Listed {
    items: Vec<Arg>,
    function: Option<String>,
}

/// Read the list under `key` (of state `id`), arguments located from line `cursor` on.
/// `None` when it is not a list (reported).
fn arguments(
    block: &Block,
    id: &str,
    key: &str,
    at: &Loc,
    value: Value,
    cursor: &mut usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Listed> {
    let items = match value {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items,
        other => {
            diags.push(at.diag(format!(
                "state `{id}`: expected a list of `- argument: value` under `{key}`, got {}",
                describe(&other)
            )));
            return None;
        }
    };
    let mut listed = Listed { items: Vec::new(), function: None };
    let mut arg_cursor = *cursor;
    for item in items {
        match item {
            Value::String(name) if listed.function.is_none() && !key.contains('.') => {
                listed.function = Some(name);
            }
            Value::Mapping(pairs) => {
                for (arg, value) in pairs {
                    let Value::String(arg) = arg else {
                        diags.push(at.diag(format!(
                            "`{key}` in state `{id}`: expected an argument name, got {}",
                            describe(&arg)
                        )));
                        continue;
                    };
                    let arg_at = block.find(&mut arg_cursor, &arg);
                    if listed.items.iter().any(|a| a.key == arg) {
                        diags.push(
                            arg_at.diag(format!("`{key}` in state `{id}`: argument `{arg}` is given twice")),
                        );
                        continue;
                    }
                    listed.items.push(Arg::new(arg, value, arg_at));
                }
            }
            other => diags.push(at.diag(format!(
                "`{key}` in state `{id}`: expected `- argument: value`, got {}",
                describe(&other)
            ))),
        }
    }
    Some(listed)
}

/// The lines of one state id's block, to find its keys in.
struct Block<'t, 'a> {
    text: &'t Text<'a>,
    start: usize,
    end: usize,
}

impl Block<'_, '_> {
    /// Where `key` is, at or after line `from` (moved past it); the id's line if not found.
    fn find(&self, from: &mut usize, key: &str) -> Loc {
        match self
            .text
            .find_key(*from, self.end, key)
            .or_else(|| self.text.find_key(self.start, self.end, key))
        {
            Some((line, col)) => {
                *from = line;
                self.text.at(line, col)
            }
            None => self.text.at(self.start, 0),
        }
    }
}

fn parse_id(
    block: &Block,
    id: &str,
    id_at: &Loc,
    functions: Mapping,
    raws: &mut Vec<Raw>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut cursor = block.start;
    let mut modules: Vec<String> = Vec::new();
    for (key, args) in functions {
        let Value::String(key) = key else {
            diags.push(id_at.diag(format!("state `{id}`: expected a function name, got {}", describe(&key))));
            continue;
        };
        let at = block.find(&mut cursor, &key);
        let Some(listed) = arguments(block, id, &key, &at, args, &mut cursor, diags) else { continue };
        let (module, function) = match key.split_once('.') {
            Some((module, function)) => (module.to_string(), Some(function.to_string())),
            None => (key.clone(), listed.function),
        };
        let Some(function) = function else {
            diags.push(at.diag(format!(
                "state `{id}`: `{key}` names no function; expected `{key}.<function>:` such as {}",
                functions_of(&module)
            )));
            continue;
        };
        let name = format!("{module}.{function}");
        let Some(spec) = function::spec(&name) else {
            let expected = if MODULES.contains(&module.as_str()) {
                format!("the {module} module has {}", functions_of(&module))
            } else {
                format!("expected one of {}", SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
            };
            diags.push(at.diag(format!("state `{id}`: unknown state function `{name}`; {expected}")));
            continue;
        };
        if modules.contains(&module) {
            diags.push(at.diag(format!(
                "state `{id}` has a second `{module}` function; expected one function per module, \
                 give `{name}` its own state id"
            )));
            continue;
        }
        modules.push(module);

        let mut args = listed.items;
        let mut requisites = Vec::new();
        for (kind, incoming) in requisite_keys() {
            requisites.extend(take_requisites(block, spec.name, &mut args, kind, incoming, diags));
        }
        raws.push(Raw { id: id.to_string(), spec, args, requisites, at: id_at.clone(), function_at: at });
    }
}

/// Every requisite key: (`require`, false), … then (`require_in`, true), …
fn requisite_keys() -> impl Iterator<Item = (RequisiteKind, bool)> {
    [false, true].into_iter().flat_map(|incoming| RequisiteKind::ALL.into_iter().map(move |k| (k, incoming)))
}

/// Take `- require: [{file: worker-config}, {sls: coins.base}, worker]` (or `require_in`
/// when `incoming`) out of `args`. `function` names where it is written, for messages.
fn take_requisites(
    block: &Block,
    function: &str,
    args: &mut Vec<Arg>,
    kind: RequisiteKind,
    incoming: bool,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Written> {
    let key = if incoming { format!("{kind}_in") } else { kind.to_string() };
    let Some(i) = args.iter().position(|a| a.key == key) else { return Vec::new() };
    let Arg { value, loc: at, .. } = args.remove(i);
    let items = match value {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        other => {
            diags.push(at.diag(format!(
                "{function}: `{key}`: expected a list such as `- file: worker-config`, got {}",
                describe(&other)
            )));
            return Vec::new();
        }
    };
    let mut cursor = block.start;
    let mut line_of = |target: &str| -> Loc {
        // the requisite's own line when it can be found after the requisite key
        let from = block.text.find_key(block.start, block.end, &key).map_or(block.start, |(l, _)| l);
        cursor = cursor.max(from);
        match block.text.find_text(cursor, block.end, target) {
            Some((line, col)) => {
                cursor = line;
                block.text.at(line, col)
            }
            None => at.clone(),
        }
    };
    let mut written = Vec::new();
    for item in items {
        let (module, target) = match item {
            Value::String(target) => (None, target),
            Value::Mapping(pair) if pair.len() == 1 => {
                let Some((Value::String(module), Value::String(target))) = pair.into_iter().next() else {
                    diags.push(
                        at.diag(format!("{function}: `{key}`: expected `- module: state id` with strings")),
                    );
                    continue;
                };
                (Some(module), target)
            }
            other => {
                diags.push(at.diag(format!(
                    "{function}: `{key}`: expected `- module: state id` such as `- file: worker-config`, got {}",
                    describe(&other)
                )));
                continue;
            }
        };
        let here = line_of(&target);
        if let Some(module) = module.as_deref().filter(|m| !MODULES.contains(m) && *m != "sls") {
            diags.push(here.diag(format!(
                "{function}: `{key}`: unknown module `{module}`; expected {} or sls",
                MODULES.join(", ")
            )));
            continue;
        }
        written.push(Written { kind, incoming, module, target, at: here });
    }
    written
}

fn functions_of(module: &str) -> String {
    let names: Vec<&str> =
        SPECS.iter().map(|s| s.name).filter(|n| n.split('.').next() == Some(module)).collect();
    if names.is_empty() {
        SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    } else {
        names.join(", ")
    }
}

/// A YAML value's kind, for "expected …, got a list".
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The state files that `paths` include, and those include, as written in the templates
/// (an `include:` list of plain ids; one made by Tera is found only by rendering). For the
/// master to know, before rendering, every file whose `peers` reads count.
pub fn includes_written(files: &crate::path::Files, paths: &[String]) -> Vec<String> {
    let mut found: Vec<String> = paths.to_vec();
    let mut i = 0;
    while let Some(path) = found.get(i).cloned() {
        i += 1;
        let Some(template) = files.get(&path) else { continue };
        let text = Text::plain(&path, template);
        let Some(key) = text.child_key(None, INCLUDE) else { continue };
        for item in text.items(key) {
            let written = text.scalar_at(item).trim_matches(['"', '\'']);
            let Some((included, _)) = StateId::parse(written).ok().and_then(|s| s.find(files)) else {
                continue;
            };
            if !found.contains(&included) {
                found.push(included);
            }
        }
    }
    found.split_off(paths.len())
}
