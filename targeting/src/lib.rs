//! Targets: which minions a job goes to, resolved on the master so the set of expected
//! returns is known before anything is sent.
//!
//! Forms (Salt's): glob on ids (default), `-E` regex on ids (anchored at the start, as
//! Salt's `re.match`), `-L` comma list of minion ids, `-G grain:glob` (nested keys with
//! `:`, lists match if any element does, case-insensitive), and `-C` compound: terms
//! `G@grain:glob`, `P@grain:regex`, `S@cidr` (an address in the `ipv4` grain), `E@regex`,
//! `L@a,b`, `R@role`, `I@pillar:glob` (the minion's pillar, which the caller supplies),
//! `N@group` (a named compound target, [`Nodegroups`]), or a bare glob, joined with `and`,
//! `or`, `not` and parentheses (`not` binds tightest, then `and`, then `or`).
//!
//! A nodegroup is expanded when the target is parsed: the result holds the group's parsed
//! target, so matching never looks a name up. Expansion is bounded as the text is: groups
//! nest at most [`MAX_NODEGROUP_DEPTH`] deep, a group that reaches itself is a cycle, and
//! the terms of every group expanded count against [`MAX_TERMS`] together.
//!
//! A compound target comes from a user (the CLI, or a key of `roles/top.yaml`), so its size
//! is bounded ([`MAX_COMPOUND_LEN`], [`MAX_DEPTH`], [`MAX_TERMS`]) and it is parsed with an
//! explicit stack, never by recursion on the input. Chains of `and` / `or` become one n-ary
//! node, so a parsed target is at most about `2 * MAX_DEPTH` nodes deep: matching and
//! dropping it recurse no deeper than that.

use std::collections::BTreeMap;

use api::TargetType;
use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;
use serde_json::Value;
use wire::MinionId;

/// The longest compound target, in bytes.
pub const MAX_COMPOUND_LEN: usize = 4096;
/// How deep parentheses and `not` may nest in a compound target, together.
pub const MAX_DEPTH: usize = 32;
/// The most terms (`G@...`, `L@...`, globs...) in a compound target.
pub const MAX_TERMS: usize = 512;
/// How deep nodegroups may name other nodegroups (`N@a` in `a`'s target is depth 2).
pub const MAX_NODEGROUP_DEPTH: usize = 8;

/// Named compound targets, for `N@name` (the master reads them from
/// `roles/nodegroups.yaml`). A group's target may name other groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodegroups {
    groups: BTreeMap<String, String>,
}

/// No nodegroups: what [`Target::parse`] expands `N@` with.
static NO_GROUPS: Nodegroups = Nodegroups { groups: BTreeMap::new() };

impl Nodegroups {
    pub fn new(groups: BTreeMap<String, String>) -> Nodegroups {
        Nodegroups { groups }
    }

    /// The compound target of group `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.groups.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("empty target")]
    Empty,
    #[error("bad glob {pattern:?}: {reason}")]
    Glob { pattern: String, reason: String },
    #[error("bad regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("bad grain target {0:?}: expected grain:glob, like os:debian")]
    Grain(String),
    #[error("{0}")]
    Term(String),
    #[error("bad list target: {0}")]
    List(#[from] wire::id::InvalidId),
    #[error("bad compound target at token {pos} {token:?}: {reason}")]
    Compound { pos: usize, token: String, reason: String },
    #[error(
        "compound target is {0} bytes long (at most {MAX_COMPOUND_LEN}); shorten it, e.g. with one glob \
         or grain instead of many terms"
    )]
    TooLong(usize),
    #[error(
        "compound target nests {0} levels deep (at most {MAX_DEPTH}, counting parentheses and 'not'); \
         write it with fewer nested levels"
    )]
    TooDeep(usize),
    #[error(
        "compound target has {0} terms (at most {MAX_TERMS}); use fewer, e.g. one glob or grain that \
         covers several"
    )]
    TooManyTerms(usize),
}

/// A parsed target, ready to match minions.
#[derive(Debug)]
pub enum Target {
    Glob(GlobMatcher),
    Pcre(Regex),
    List(Vec<MinionId>),
    /// `key:glob`; `whole` is `glob` compiled once (case-insensitive) for scalar and list
    /// grains, the common case; nested grains (`net:eth0:10.*`) compile their tail as met.
    Grain {
        key: String,
        glob: String,
        whole: GlobMatcher,
    },
    /// `key:regex` on grains (`P@`), anchored at the start as `E@` is.
    GrainPcre {
        key: String,
        regex: Regex,
    },
    /// An address of the minion's `ipv4` grain in `network/prefix` (`S@`).
    Subnet {
        network: u32,
        prefix: u8,
    },
    Role(String),
    /// `key:glob` on the minion's pillar (`I@`), matched as a grain is.
    Pillar {
        key: String,
        glob: String,
        whole: GlobMatcher,
    },
    Not(Box<Target>),
    /// Every one matches (two or more).
    And(Vec<Target>),
    /// Any one matches (two or more).
    Or(Vec<Target>),
}

/// What a target is matched against: an id and its grains (an object; may be empty for a
/// minion that never connected), and its pillar when the caller knows it (`I@` matches
/// nothing without one; see [`Target::uses_pillar`] to compute it only when needed).
pub struct Candidate<'a> {
    pub id: &'a str,
    pub grains: &'a Value,
    pub pillar: Option<&'a Value>,
}

fn glob(pattern: &str, case_insensitive: bool) -> Result<GlobMatcher, TargetError> {
    GlobBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| TargetError::Glob { pattern: pattern.to_string(), reason: e.kind().to_string() })
}

fn pcre(pattern: &str) -> Result<Regex, TargetError> {
    Regex::new(&format!("^(?:{pattern})"))
        .map_err(|e| TargetError::Regex { pattern: pattern.to_string(), reason: e.to_string() })
}

fn grain(expr: &str) -> Result<Target, TargetError> {
    match expr.split_once(':') {
        Some((key, glob)) if !key.is_empty() => {
            Ok(Target::Grain { key: key.to_string(), glob: glob.to_string(), whole: self::glob(glob, true)? })
        }
        _ => Err(TargetError::Grain(expr.to_string())),
    }
}

fn pillar(expr: &str) -> Result<Target, String> {
    match expr.split_once(':') {
        Some((key, glob)) if !key.is_empty() => Ok(Target::Pillar {
            key: key.to_string(),
            glob: glob.to_string(),
            whole: self::glob(glob, true).map_err(|e| e.to_string())?,
        }),
        _ => Err(format!("bad pillar target {expr:?}: expected key:glob, like app:env:prod")),
    }
}

fn grain_pcre(expr: &str) -> Result<Target, String> {
    match expr.split_once(':') {
        Some((key, re)) if !key.is_empty() => Ok(Target::GrainPcre {
            key: key.to_string(),
            regex: Regex::new(&format!("^(?:{re})"))
                .map_err(|e| format!("bad regular expression {re:?}: {e}"))?,
        }),
        _ => Err(format!("bad grain target {expr:?}: expected grain:regex, like os:(debian|ubuntu)")),
    }
}

/// `10.0.0.0/8` or one address (a `/32`). Written here: std parses the address, and the
/// prefix is one number, which does not warrant a crate.
fn subnet(expr: &str) -> Result<Target, String> {
    let bad = || format!("bad subnet {expr:?}: expected an IPv4 network like 10.1.0.0/16 or an address");
    let (addr, prefix) = expr.split_once('/').unwrap_or((expr, "32"));
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
    Ok(Target::Subnet { network: u32::from(addr) & mask(prefix), prefix })
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// `a,b,c`: every id must be a valid minion id (empty items, as after a trailing comma, are
/// skipped), so a typo is named rather than matching nothing.
fn list(expr: &str) -> Result<Target, TargetError> {
    let ids = expr.split(',').map(str::trim).filter(|s| !s.is_empty()).map(MinionId::new);
    Ok(Target::List(ids.collect::<Result<_, _>>()?))
}

impl Target {
    /// `expr` read as `kind`; `N@` names no group (see [`Target::parse_with`]).
    pub fn parse(expr: &str, kind: TargetType) -> Result<Self, TargetError> {
        Target::parse_with(expr, kind, &NO_GROUPS)
    }

    /// `expr` read as `kind`, with `N@name` expanded from `groups`.
    pub fn parse_with(expr: &str, kind: TargetType, groups: &Nodegroups) -> Result<Self, TargetError> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(TargetError::Empty);
        }
        match kind {
            TargetType::Glob => Ok(Target::Glob(glob(expr, false)?)),
            TargetType::Pcre => Ok(Target::Pcre(pcre(expr)?)),
            TargetType::List => list(expr),
            TargetType::Grain => grain(expr),
            TargetType::Compound => compound::parse(expr, &mut compound::Expansion::new(groups)),
            TargetType::GrainPcre => grain_pcre(expr).map_err(TargetError::Term),
            TargetType::Ipcidr => subnet(expr).map_err(TargetError::Term),
        }
    }

    /// Whether matching looks at the pillar (an `I@` term), so a caller computes pillars
    /// only for the targets that need them.
    pub fn uses_pillar(&self) -> bool {
        match self {
            Target::Pillar { .. } => true,
            Target::Not(t) => t.uses_pillar(),
            Target::And(ts) | Target::Or(ts) => ts.iter().any(Target::uses_pillar),
            _ => false,
        }
    }

    /// Recurses once per level of the tree, which [`MAX_DEPTH`] (and
    /// [`MAX_NODEGROUP_DEPTH`]) keep shallow.
    pub fn matches(&self, c: &Candidate) -> bool {
        match self {
            Target::Glob(g) => g.is_match(c.id),
            Target::Pcre(r) => r.is_match(c.id),
            Target::List(ids) => ids.iter().any(|i| i.as_str() == c.id),
            Target::Grain { key, glob, whole } => match_grain(c.grains.get(key.as_str()), glob, Some(whole)),
            Target::GrainPcre { key, regex } => match_grain_regex(c.grains.get(key.as_str()), regex),
            Target::Subnet { network, prefix } => match c.grains.get("ipv4") {
                Some(Value::Array(addrs)) => addrs.iter().filter_map(Value::as_str).any(|a| {
                    a.parse::<std::net::Ipv4Addr>().is_ok_and(|a| u32::from(a) & mask(*prefix) == *network)
                }),
                _ => false,
            },
            Target::Role(role) => match c.grains.get("roles") {
                Some(Value::Array(roles)) => roles.iter().any(|r| r.as_str() == Some(role)),
                _ => false,
            },
            Target::Pillar { key, glob, whole } => {
                match_grain(c.pillar.and_then(|p| p.get(key.as_str())), glob, Some(whole))
            }
            Target::Not(t) => !t.matches(c),
            Target::And(all) => all.iter().all(|t| t.matches(c)),
            Target::Or(any) => any.iter().any(|t| t.matches(c)),
        }
    }
}

/// Matches `regex` against a grain value: lists match when an element does, scalars by
/// their text. An object does not match: the key is one top-level grain (`G@` reaches
/// nested ones), since the regex may hold `:` itself.
fn match_grain_regex(value: Option<&Value>, regex: &Regex) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Object(_)) => false,
        Some(Value::Array(items)) => items.iter().any(|v| match_grain_regex(Some(v), regex)),
        Some(Value::String(s)) => regex.is_match(s),
        Some(other) => regex.is_match(&other.to_string()),
    }
}

/// Matches `glob` against a grain value: objects descend on `key:rest`, lists match when an
/// element does, scalars compare by their text, case-insensitively.
fn match_grain(value: Option<&Value>, pattern: &str, compiled: Option<&GlobMatcher>) -> bool {
    let leaf = |text: &str| match compiled {
        Some(g) => g.is_match(text),
        None => glob(pattern, true).map(|g| g.is_match(text)).unwrap_or(false),
    };
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => match pattern.split_once(':') {
            Some((k, rest)) => match_grain(map.get(k), rest, None),
            None => false,
        },
        Some(Value::Array(items)) => items.iter().any(|v| match_grain(Some(v), pattern, compiled)),
        Some(Value::String(s)) => leaf(s),
        Some(other) => leaf(&other.to_string()),
    }
}

/// The compound parser: operator precedence over an explicit stack (shunting-yard), so the
/// input's shape never reaches the call stack.
mod compound {
    use super::*;

    const OPEN: &str = "(";
    const CLOSE: &str = ")";

    /// Splits on white space, and parentheses off the words they touch (those a word does
    /// not balance itself).
    fn tokenize(expr: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for word in expr.split_whitespace() {
            let mut w = word;
            while let Some(rest) = w.strip_prefix('(') {
                out.push(OPEN);
                w = rest;
            }
            // a `)` closes a group only when the word does not open it itself, so a regex
            // term keeps its own parentheses (`E@web-(1|2))` is `E@web-(1|2)` then `)`)
            let unbalanced = w.matches(')').count().saturating_sub(w.matches('(').count());
            let trailing = w.len() - w.trim_end_matches(')').len();
            let closing = unbalanced.min(trailing);
            w = &w[..w.len() - closing];
            if !w.is_empty() {
                out.push(w);
            }
            out.extend(std::iter::repeat_n(CLOSE, closing));
        }
        out
    }

    /// How deep `(` and `not` nest (the deepest point of the stack the parser keeps of
    /// them) and how many terms there are. Counts whatever the syntax, so a target that
    /// is too big says so before any syntax error in it.
    fn measure(tokens: &[&str]) -> (usize, usize) {
        let (mut open, mut deepest, mut terms) = (Vec::new(), 0, 0);
        // an operand just ended: the `not`s waiting for it are done
        let operand_done = |open: &mut Vec<&str>| {
            while open.last() == Some(&"not") {
                open.pop();
            }
        };
        for &tok in tokens {
            match tok {
                OPEN | "not" => {
                    open.push(tok);
                    deepest = deepest.max(open.len());
                }
                CLOSE => {
                    operand_done(&mut open);
                    if open.last() == Some(&OPEN) {
                        open.pop();
                    }
                    operand_done(&mut open);
                }
                "and" | "or" => {}
                _ => {
                    terms += 1;
                    operand_done(&mut open);
                }
            }
        }
        (deepest, terms)
    }

    /// The nodegroups a parse expands `N@` with, and what expanding has used so far.
    pub struct Expansion<'g> {
        groups: &'g Nodegroups,
        /// The groups being expanded, outermost first.
        chain: Vec<&'g str>,
        /// Terms parsed so far, over every group expanded.
        terms: usize,
    }

    impl<'g> Expansion<'g> {
        pub fn new(groups: &'g Nodegroups) -> Self {
            Expansion { groups, chain: Vec::new(), terms: 0 }
        }

        /// The target of group `name`, parsed (and its own groups expanded).
        fn group(&mut self, name: &str) -> Result<Target, String> {
            let Some((name, expr)) = self.groups.groups.get_key_value(name) else {
                let known: Vec<&str> = self.groups.names().collect();
                return Err(if known.is_empty() {
                    format!(
                        "no nodegroup '{name}': none is defined (nodegroups live in roles/nodegroups.yaml)"
                    )
                } else {
                    format!(
                        "no nodegroup '{name}' (roles/nodegroups.yaml defines {})",
                        known.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
                    )
                });
            };
            if self.chain.contains(&name.as_str()) {
                let cycle: Vec<&str> = self.chain.iter().copied().chain([name.as_str()]).collect();
                return Err(format!("nodegroups name each other in a cycle: {}", cycle.join(" -> ")));
            }
            if self.chain.len() >= MAX_NODEGROUP_DEPTH {
                return Err(format!(
                    "nodegroups nest more than {MAX_NODEGROUP_DEPTH} deep ({} -> {name}); name fewer groups \
                     inside groups",
                    self.chain.join(" -> ")
                ));
            }
            self.chain.push(name);
            let parsed = parse(expr.trim(), self);
            self.chain.pop();
            parsed.map_err(|e| format!("in nodegroup '{name}': {e}"))
        }
    }

    pub fn parse(expr: &str, ex: &mut Expansion) -> Result<Target, TargetError> {
        if expr.is_empty() {
            return Err(TargetError::Empty);
        }
        if expr.len() > MAX_COMPOUND_LEN {
            return Err(TargetError::TooLong(expr.len()));
        }
        let tokens = tokenize(expr);
        let (depth, terms) = measure(&tokens);
        if depth > MAX_DEPTH {
            return Err(TargetError::TooDeep(depth));
        }
        ex.terms += terms;
        if ex.terms > MAX_TERMS {
            return Err(TargetError::TooManyTerms(ex.terms));
        }
        Parser::default().run(&tokens, ex)
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Op {
        /// A `(` at this token (1-based), for the error when it is never closed.
        Open(usize),
        Not,
        And,
        Or,
    }

    #[derive(Default)]
    struct Parser {
        /// Operands parsed and not yet taken by an operator.
        operands: Vec<Target>,
        /// Operators waiting for their operands; `and` and `or` only above an operand.
        ops: Vec<Op>,
    }

    fn error(pos: usize, token: &str, reason: &str) -> TargetError {
        TargetError::Compound { pos, token: token.to_string(), reason: reason.to_string() }
    }

    impl Parser {
        fn run(mut self, tokens: &[&str], ex: &mut Expansion) -> Result<Target, TargetError> {
            let mut expect_operand = true;
            for (i, &tok) in tokens.iter().enumerate() {
                let pos = i + 1;
                if expect_operand {
                    match tok {
                        OPEN => self.ops.push(Op::Open(pos)),
                        "not" => self.ops.push(Op::Not),
                        CLOSE | "and" | "or" => return Err(error(pos, tok, "expected a target here")),
                        _ => {
                            let t = term(tok, ex).map_err(|e| error(pos, tok, &e))?;
                            self.operand(t);
                            expect_operand = false;
                        }
                    }
                    continue;
                }
                match tok {
                    "and" => {
                        self.reduce(false);
                        self.ops.push(Op::And);
                    }
                    "or" => {
                        self.reduce(true);
                        self.ops.push(Op::Or);
                    }
                    CLOSE => {
                        self.reduce(true);
                        if !matches!(self.ops.pop(), Some(Op::Open(_))) {
                            return Err(error(pos, tok, "expected 'and', 'or' or the end of the target"));
                        }
                        let group = self.operands.pop().expect("a closed group holds an operand");
                        self.operand(group);
                    }
                    _ if self.ops.iter().any(|op| matches!(op, Op::Open(_))) => {
                        return Err(error(pos, tok, "expected 'and', 'or' or ')'"));
                    }
                    _ => return Err(error(pos, tok, "expected 'and', 'or' or the end of the target")),
                }
                expect_operand = tok != CLOSE;
            }
            if expect_operand {
                let last = tokens.last().copied().unwrap_or("");
                return Err(error(tokens.len(), last, "expected a target after it"));
            }
            self.reduce(true);
            if let Some(Op::Open(pos)) = self.ops.last() {
                return Err(error(*pos, OPEN, "unclosed '('; expected a ')' to close it"));
            }
            Ok(self.operands.pop().expect("a complete target leaves one operand"))
        }

        /// A complete operand: the `not`s waiting for it take it first.
        fn operand(&mut self, mut t: Target) {
            while self.ops.last() == Some(&Op::Not) {
                self.ops.pop();
                t = Target::Not(Box::new(t));
            }
            self.operands.push(t);
        }

        /// Applies the `and`s on top of the stack, and the `or`s too with `or_too`.
        fn reduce(&mut self, or_too: bool) {
            loop {
                let and = match self.ops.last() {
                    Some(Op::And) => true,
                    Some(Op::Or) if or_too => false,
                    _ => return,
                };
                self.ops.pop();
                let right = self.operands.pop().expect("an operator's right operand");
                let left = self.operands.pop().expect("an operator's left operand");
                self.operands.push(match (and, left) {
                    (true, Target::And(mut all)) => {
                        all.push(right);
                        Target::And(all)
                    }
                    (false, Target::Or(mut any)) => {
                        any.push(right);
                        Target::Or(any)
                    }
                    (true, left) => Target::And(vec![left, right]),
                    (false, left) => Target::Or(vec![left, right]),
                });
            }
        }
    }

    fn term(tok: &str, ex: &mut Expansion) -> Result<Target, String> {
        let Some((prefix, rest)) = tok.split_once('@') else {
            return glob(tok, false).map(Target::Glob).map_err(|e| e.to_string());
        };
        if rest.is_empty() {
            return Err(format!("nothing after '{prefix}@'"));
        }
        let plain = |e: TargetError| e.to_string();
        match prefix {
            "G" => grain(rest).map_err(plain),
            "E" => pcre(rest).map(Target::Pcre).map_err(plain),
            "L" => list(rest).map_err(plain),
            "P" => grain_pcre(rest),
            "S" => subnet(rest),
            "R" => Ok(Target::Role(rest.to_string())),
            "I" => pillar(rest),
            "N" => ex.group(rest),
            _ => Err(format!("unknown target type '{prefix}@' (expected G@, P@, S@, E@, L@, R@, I@ or N@)")),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::tests::on_small_stack;
        use super::*;

        #[test]
        fn the_parser_does_not_recurse_on_its_input() {
            // far past the limits, straight to the parser: the input's depth stays off the
            // call stack, and long chains come out flat (list terms: globs are slow to build)
            let parens = format!("{}web-1{}", "(".repeat(100_000), ")".repeat(100_000));
            let t = on_small_stack(move || {
                Parser::default().run(&tokenize(&parens), &mut Expansion::new(&NO_GROUPS))
            });
            assert!(matches!(t, Ok(Target::Glob(_))), "{t:?}");
            let ors = "L@web-1 or ".repeat(100_000) + "web-2";
            let t = on_small_stack(move || {
                Parser::default().run(&tokenize(&ors), &mut Expansion::new(&NO_GROUPS))
            });
            assert!(matches!(&t, Ok(Target::Or(any)) if any.len() == 100_001), "not one flat 'or'");
            // the first group starts the chain; the others stay groups of two
            let ands = "(L@a and L@b) and ".repeat(50_000) + "web-3";
            let t = on_small_stack(move || {
                Parser::default().run(&tokenize(&ands), &mut Expansion::new(&NO_GROUPS))
            });
            assert!(matches!(&t, Ok(Target::And(all)) if all.len() == 50_002), "not one flat 'and'");
        }

        #[test]
        fn depth_counts_open_parentheses_and_waiting_nots() {
            let cases = [
                ("a", (0, 1)),
                ("not a and not b", (1, 2)),
                ("not (a or not b) and (c)", (3, 3)),
                ("((a) or (b)) and not not (c)", (3, 3)),
                ("not not not", (3, 0)),
                (")))) a", (0, 1)),
            ];
            for (expr, want) in cases {
                assert_eq!(measure(&tokenize(expr)), want, "{expr}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Vec<(&'static str, Value)> {
        vec![
            ("web-1", json!({"os": "Debian", "os_family": "Debian", "roles": ["webui"], "num_cpus": 2})),
            ("web-2", json!({"os": "Debian", "os_family": "Debian", "roles": ["webui"], "num_cpus": 4})),
            (
                "db-1",
                json!({"os": "Debian", "os_family": "Debian", "roles": ["datastore"], "ipv4": ["10.0.0.5"]}),
            ),
            (
                "worker-1",
                json!({"os": "Ubuntu", "os_family": "Debian", "net": {"eth0": "10.1.0.1"}, "ipv4": ["127.0.0.1", "10.1.0.1"]}),
            ),
            ("key", json!({})),
        ]
    }

    fn select(expr: &str, kind: TargetType) -> Result<Vec<&'static str>, TargetError> {
        let t = Target::parse(expr, kind)?;
        Ok(fleet()
            .iter()
            .filter(|(id, g)| t.matches(&Candidate { id, grains: g, pillar: None }))
            .map(|(id, _)| *id)
            .collect())
    }

    #[test]
    fn every_form_selects_exactly_its_subset() {
        use TargetType::*;
        let cases: &[(&str, TargetType, &[&str])] = &[
            ("*", Glob, &["web-1", "web-2", "db-1", "worker-1", "key"]),
            ("web-*", Glob, &["web-1", "web-2"]),
            ("web-[2-9]", Glob, &["web-2"]),
            ("?b-1", Glob, &["db-1"]),
            ("nothing*", Glob, &[]),
            ("web-\\d", Pcre, &["web-1", "web-2"]),
            ("w", Pcre, &["web-1", "web-2", "worker-1"]),
            ("db-1,key", List, &["db-1", "key"]),
            (" db-1 , ", List, &["db-1"]),
            ("os:debian", Grain, &["web-1", "web-2", "db-1"]),
            ("os_family:Deb*", Grain, &["web-1", "web-2", "db-1", "worker-1"]),
            ("num_cpus:4", Grain, &["web-2"]),
            ("ipv4:10.0.*", Grain, &["db-1"]),
            ("net:eth0:10.1.*", Grain, &["worker-1"]),
            ("G@os:debian and web-*", Compound, &["web-1", "web-2"]),
            ("G@os:debian and not web-*", Compound, &["db-1"]),
            ("L@db-1,key or E@worker", Compound, &["db-1", "worker-1", "key"]),
            ("web-* and (G@num_cpus:4 or L@web-1)", Compound, &["web-1", "web-2"]),
            ("(web-* or db-*) and not G@num_cpus:4", Compound, &["web-1", "db-1"]),
            ("R@webui", Compound, &["web-1", "web-2"]),
            ("not not key", Compound, &["key"]),
            ("G@os:debian and R@datastore or worker-*", Compound, &["db-1", "worker-1"]),
            ("not web-1 and web-*", Compound, &["web-2"]),
            ("web-1 or web-2 and G@num_cpus:2", Compound, &["web-1"]),
            ("(web-1 or web-2) and G@num_cpus:2", Compound, &["web-1"]),
            ("E@web-(1|2)", Compound, &["web-1", "web-2"]),
            ("P@os:(Ubuntu|Fedora)", Compound, &["worker-1"]),
            ("P@os:Deb", Compound, &["web-1", "web-2", "db-1"]),
            ("P@num_cpus:[34]", Compound, &["web-2"]),
            ("P@ipv4:10\\.0\\.", Compound, &["db-1"]),
            ("S@10.0.0.0/8", Compound, &["db-1", "worker-1"]),
            ("S@10.1.0.0/16 or S@10.0.0.5", Compound, &["db-1", "worker-1"]),
            ("S@0.0.0.0/0", Compound, &["db-1", "worker-1"]),
            ("S@127.0.0.1/32 and not P@os:Debian", Compound, &["worker-1"]),
            ("(E@web-(1|2)) and G@num_cpus:2", Compound, &["web-1"]),
            ("(key or (E@web-(1|2)))", Compound, &["web-1", "web-2", "key"]),
            ("key or db-1 or web-2 and not G@num_cpus:4 or worker-1", Compound, &["db-1", "worker-1", "key"]),
        ];
        for (expr, kind, want) in cases {
            assert_eq!(select(expr, *kind).as_deref(), Ok(*want), "{expr} ({kind:?})");
        }
    }

    #[test]
    fn bad_targets_name_the_token() {
        use TargetType::*;
        let cases: &[(&str, TargetType, &str)] = &[
            ("G@os:debian and", Compound, "token 2 \"and\""),
            ("web-* db-*", Compound, "token 2 \"db-*\""),
            ("X@foo", Compound, "unknown target type 'X@'"),
            ("(web-*", Compound, "token 1 \"(\": unclosed '('"),
            ("(web-* db-*)", Compound, "token 3 \"db-*\": expected 'and', 'or' or ')'"),
            ("()", Compound, "token 2 \")\": expected a target here"),
            ("not", Compound, "token 1 \"not\": expected a target after it"),
            ("web-*)", Compound, "token 2 \")\""),
            ("G@nocolon", Compound, "expected grain:glob"),
            ("and web-*", Compound, "token 1 \"and\""),
            ("E@(", Compound, "bad regular expression"),
            ("P@os:(", Compound, "bad regular expression"),
            ("P@nocolon", Compound, "expected grain:regex"),
            ("S@10.0.0.0/33", Compound, "bad subnet"),
            ("S@10.0.0/8", Compound, "bad subnet"),
            ("nocolon", Grain, "expected grain:glob"),
            ("bad id,m1", List, "bad list target: invalid minion id \"bad id\""),
            ("m1,../etc", List, "invalid minion id \"../etc\""),
            ("L@db-1,a/b", Compound, "token 1 \"L@db-1,a/b\": bad list target: invalid minion id \"a/b\""),
            ("(", Pcre, "bad regular expression"),
            ("[", Glob, "bad glob"),
            ("   ", Glob, "empty target"),
        ];
        for (expr, kind, want) in cases {
            let err = select(expr, *kind).unwrap_err().to_string();
            assert!(err.contains(want), "{expr}: {err:?} should contain {want:?}");
        }
    }

    #[test]
    fn pillar_terms_match_the_pillar_given_and_nothing_without_one() {
        let pillar = json!({"app": {"env": "Prod"}, "tier": "web", "zones": ["a", "b"]});
        let cases = [
            ("I@tier:web", true),
            ("I@tier:w*", true),
            ("I@app:env:prod", true),
            ("I@app:env:dev", false),
            ("I@zones:b", true),
            ("I@missing:*", false),
            ("I@tier:web and not I@zones:c", true),
        ];
        let grains = json!({"tier": "db"});
        for (expr, want) in cases {
            let t = Target::parse(expr, TargetType::Compound).unwrap();
            assert!(t.uses_pillar(), "{expr}");
            let with = Candidate { id: "w1", grains: &grains, pillar: Some(&pillar) };
            assert_eq!(t.matches(&with), want, "{expr}");
            // the grain of the same name is not the pillar, and no pillar matches nothing
            let without = Candidate { id: "w1", grains: &json!({"tier": "web"}), pillar: None };
            assert!(!t.matches(&without) || expr.contains("not"), "{expr} matched without a pillar");
        }
        assert!(!Target::parse("G@tier:web or R@x", TargetType::Compound).unwrap().uses_pillar());
        let err = Target::parse("I@nocolon", TargetType::Compound).unwrap_err().to_string();
        assert!(err.contains("expected key:glob"), "{err}");
    }

    fn groups(pairs: &[(&str, &str)]) -> Nodegroups {
        Nodegroups::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn nodegroups_expand_into_their_targets_also_inside_each_other() {
        let g = groups(&[
            ("webs", "web-*"),
            ("debian", "G@os:debian"),
            ("debian_webs", "N@webs and N@debian"),
            ("all_but_webs", "not N@webs"),
        ]);
        let cases: &[(&str, &[&str])] = &[
            ("N@webs", &["web-1", "web-2"]),
            ("N@debian_webs and G@num_cpus:4", &["web-2"]),
            ("N@all_but_webs and not key", &["db-1", "worker-1"]),
            ("(N@webs or N@debian) and not N@webs", &["db-1"]),
        ];
        for (expr, want) in cases {
            let t = Target::parse_with(expr, TargetType::Compound, &g).unwrap();
            let got: Vec<&str> = fleet()
                .iter()
                .filter(|(id, gr)| t.matches(&Candidate { id, grains: gr, pillar: None }))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(&got, want, "{expr}");
        }
    }

    #[test]
    fn unknown_cyclic_and_too_nested_nodegroups_are_refused_by_name() {
        let mut pairs = vec![
            ("a", "N@b"),
            ("b", "web-* or N@a"),
            ("self", "N@self"),
            ("broken", "N@nope"),
            ("bad", "web-* and"),
        ];
        // a chain one deeper than allowed: g0 -> g1 -> ... -> g8
        let names: Vec<String> = (0..=MAX_NODEGROUP_DEPTH).map(|i| format!("g{i}")).collect();
        let targets: Vec<String> = (0..=MAX_NODEGROUP_DEPTH)
            .map(|i| if i < MAX_NODEGROUP_DEPTH { format!("N@g{}", i + 1) } else { "web-1".into() })
            .collect();
        for (n, t) in names.iter().zip(&targets) {
            pairs.push((n, t));
        }
        let g = groups(&pairs);
        let cases = [
            ("N@a", "nodegroups name each other in a cycle: a -> b -> a"),
            ("N@self", "cycle: self -> self"),
            (
                "N@broken",
                "in nodegroup 'broken': bad compound target at token 1 \"N@nope\": no nodegroup 'nope'",
            ),
            ("N@bad", "in nodegroup 'bad': bad compound target at token 2 \"and\""),
            (
                "web-1 or N@missing",
                "token 3 \"N@missing\": no nodegroup 'missing' (roles/nodegroups.yaml defines",
            ),
            ("N@g0", "nodegroups nest more than 8 deep (g0 -> g1"),
        ];
        for (expr, want) in cases {
            let err = Target::parse_with(expr, TargetType::Compound, &g).unwrap_err().to_string();
            assert!(err.contains(want), "{expr}: {err:?} should contain {want:?}");
        }
        // one level less is fine
        assert!(Target::parse_with("N@g1", TargetType::Compound, &g).is_ok());
        let err = Target::parse("N@webs", TargetType::Compound).unwrap_err().to_string();
        assert!(err.contains("no nodegroup 'webs': none is defined"), "{err}");
    }

    #[test]
    fn nodegroup_terms_count_together_so_expansion_cannot_blow_up() {
        // each group names the next four times: 4^n terms if expanded without a budget
        let pairs = (0..5).map(|i| {
            let t = if i < 4 { vec![format!("N@d{}", i + 1); 4].join(" or ") } else { "x".into() };
            (format!("d{i}"), t)
        });
        let g = Nodegroups::new(pairs.collect());
        let err = Target::parse_with("N@d0", TargetType::Compound, &g).unwrap_err().to_string();
        assert!(err.contains("terms (at most 512)"), "{err}");
        // one level less: 1 + 4 + 16 + 64 + 64 terms
        assert!(Target::parse_with("N@d1", TargetType::Compound, &g).is_ok());
    }

    /// Runs `f` on a thread with a small stack: what passes here does not lean on the stack.
    pub(super) fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(256 << 10).spawn(f).unwrap().join().unwrap()
    }

    #[test]
    fn deep_long_and_wide_compound_targets_are_refused_with_their_size() {
        let cases: Vec<(String, TargetError, &str)> = vec![
            // the shapes of issue 7, each of which overflowed the stack
            (
                format!("{}web-1{}", "(".repeat(1200), ")".repeat(1200)),
                TargetError::TooDeep(1200),
                "compound target nests 1200 levels deep (at most 32",
            ),
            (
                "not ".repeat(10_000) + "web-1",
                TargetError::TooLong(40_005),
                "is 40005 bytes long (at most 4096)",
            ),
            ("web-1 or ".repeat(20_000) + "web-1", TargetError::TooLong(180_005), "is 180005 bytes long"),
            // one past each limit, short enough for the others
            (
                format!("{}web-1{}", "(".repeat(33), ")".repeat(33)),
                TargetError::TooDeep(33),
                "nests 33 levels",
            ),
            ("not ".repeat(33) + "web-1", TargetError::TooDeep(33), "nests 33 levels"),
            ("not (".repeat(17) + "web-1" + &")".repeat(17), TargetError::TooDeep(34), "nests 34 levels"),
            ("x or ".repeat(512) + "web-1", TargetError::TooManyTerms(513), "has 513 terms (at most 512)"),
            // the size is told before a syntax error in it
            ("(".repeat(4000), TargetError::TooDeep(4000), "nests 4000 levels"),
            ("x ".repeat(2049), TargetError::TooLong(4097), "is 4097 bytes long"),
        ];
        for (expr, want, text) in cases {
            let got = on_small_stack(move || Target::parse(&expr, TargetType::Compound).unwrap_err());
            assert_eq!(got, want);
            assert!(got.to_string().contains(text), "{got} should contain {text:?}");
        }
    }

    #[test]
    fn the_largest_allowed_targets_match_and_drop_on_a_small_stack() {
        let cases: Vec<(String, &[&str])> = vec![
            // 32 levels of parentheses, each with an `or` over an `and`: the deepest tree
            ("(nothing or web-1 and ".repeat(32) + "web-*" + &")".repeat(32), &["web-1"]),
            // 16 of `not (`: 32 levels, an even number of `not`
            ("not (".repeat(16) + "web-*" + &")".repeat(16), &["web-1", "web-2"]),
            ("not ".repeat(31) + "web-*", &["db-1", "worker-1", "key"]),
            // 512 terms
            ("x or ".repeat(511) + "web-2", &["web-2"]),
            ("* and ".repeat(511) + "db-1", &["db-1"]),
        ];
        for (expr, want) in cases {
            assert!(expr.len() <= MAX_COMPOUND_LEN, "{} bytes", expr.len());
            let shown = expr.chars().take(40).collect::<String>();
            let got = on_small_stack(move || select(&expr, TargetType::Compound));
            assert_eq!(got.as_deref(), Ok(want), "{shown}...");
        }
    }
}
