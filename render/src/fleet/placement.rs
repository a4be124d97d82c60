//! A role's `placement:` as written: constraints on node attributes in Swarm's syntax
//! (`node.labels.zone==a`, `node.hostname!=n1`), `spread` over node labels, `max_per_node`.
//! Which node a slot goes to is decided by the fleet crate (`fleet::placement`); this module
//! only reads, checks and tells whether a node's attributes satisfy a constraint.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a role's slots may run and how they spread; empty: anywhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Every one must hold for a node to run a slot of the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Node labels (`node.labels.zone`) whose values the role's slots spread evenly over,
    /// the first label first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<String>,
    /// The most slots of the role on one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_node: Option<u32>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty() && self.spread.is_empty() && self.max_per_node.is_none()
    }
}

/// `<attribute>==<value>` or `<attribute>!=<value>`, as Swarm writes a placement constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Constraint {
    /// `node.id`, `node.hostname`, `node.role`, `node.platform.os`, `node.platform.arch`,
    /// `node.labels.<name>` or `engine.labels.<name>`.
    pub attribute: String,
    /// `==` (else `!=`).
    pub equal: bool,
    pub value: String,
}

/// The attributes of a node a constraint may name.
pub const ATTRIBUTES: &[&str] =
    &["node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch"];

/// What a node offers to constraints: its id, hostname, role, platform and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAttributes<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    /// `manager` or `worker`.
    pub role: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub engine_labels: &'a BTreeMap<String, String>,
}

impl Constraint {
    /// `node.id==<id>`: a slot pinned to one node.
    pub fn node_id(id: &str) -> Constraint {
        Constraint { attribute: "node.id".into(), equal: true, value: id.into() }
    }

    /// Whether `node` satisfies it. A label the node lacks equals nothing (so `!=` holds),
    /// as Swarm reads it. Values compare exactly, except `node.role`, `os` and `arch`
    /// ignore case as Swarm's do.
    pub fn holds(&self, node: &NodeAttributes<'_>) -> bool {
        let found: Option<&str> = match self.attribute.as_str() {
            "node.id" => Some(node.id),
            "node.hostname" => Some(node.hostname),
            "node.role" => Some(node.role),
            "node.platform.os" => Some(node.os),
            "node.platform.arch" => Some(node.arch),
            a => match (a.strip_prefix("node.labels."), a.strip_prefix("engine.labels.")) {
                (Some(name), _) => node.labels.get(name).map(String::as_str),
                (_, Some(name)) => node.engine_labels.get(name).map(String::as_str),
                _ => None,
            },
        };
        let fold = matches!(self.attribute.as_str(), "node.role" | "node.platform.os" | "node.platform.arch");
        let same =
            found.is_some_and(|f| if fold { f.eq_ignore_ascii_case(&self.value) } else { f == self.value });
        same == self.equal
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{}{op}{}", self.attribute, self.value)
    }
}

/// A label name after `node.labels.` or `engine.labels.`: letters, digits, `.`, `_`, `-`.
fn label_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A value: 1 to 128 letters, digits and `.`, `_`, `-`, `:`, `/`, `@`.
fn value_ok(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@'))
}

impl FromStr for Constraint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected `<attribute>==<value>` or `<attribute>!=<value>`, such as \
                        \"node.labels.zone==a\" or \"node.hostname!=n1\"";
        let (at, equal) = match (text.find("=="), text.find("!=")) {
            (Some(e), Some(n)) if n < e => (n, false),
            (Some(e), _) => (e, true),
            (None, Some(n)) => (n, false),
            (None, None) => return Err(format!("`{text}` has no `==` or `!=`; {expected}")),
        };
        let (attribute, value) = (&text[..at], &text[at + 2..]);
        let (attribute, value) = (attribute.trim(), value.trim());
        let known = ATTRIBUTES.contains(&attribute)
            || attribute.strip_prefix("node.labels.").is_some_and(label_name)
            || attribute.strip_prefix("engine.labels.").is_some_and(label_name);
        if !known {
            return Err(format!(
                "`{attribute}` is not a node attribute; expected one of {}, `node.labels.<name>` or \
                 `engine.labels.<name>` (in `{text}`)",
                ATTRIBUTES.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        if !value_ok(value) {
            return Err(format!(
                "`{value}` cannot be the value of `{attribute}`: expected 1 to 128 letters, digits, `.`, `_`, \
                 `-`, `:`, `/` and `@` (in `{text}`)"
            ));
        }
        if attribute == "node.role" && !["manager", "worker"].contains(&value.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{value}` is not a node role; expected `manager` or `worker` (in `{text}`)"
            ));
        }
        Ok(Constraint { attribute: attribute.into(), equal, value: value.into() })
    }
}

/// As written in the file: `"node.labels.zone==a"`.
impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The label name of a `spread` entry (`node.labels.zone` → `zone`), or what was expected.
pub fn spread_label(text: &str) -> Result<&str, String> {
    match text.strip_prefix("node.labels.") {
        Some(name) if label_name(name) => Ok(name),
        _ => Err(format!(
            "`{text}` cannot be spread over: expected a node label, `node.labels.<name>` such as \
             node.labels.zone (slots spread evenly over its values)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_read_as_swarm_writes_them() {
        let c: Constraint = "node.labels.zone==a".parse().unwrap();
        assert_eq!(c, Constraint { attribute: "node.labels.zone".into(), equal: true, value: "a".into() });
        assert_eq!(c.to_string(), "node.labels.zone==a");
        let c: Constraint = " node.hostname != n-1 ".parse().unwrap();
        assert_eq!((c.attribute.as_str(), c.equal, c.value.as_str()), ("node.hostname", false, "n-1"));
        assert_eq!("node.role==Manager".parse::<Constraint>().unwrap().value, "Manager");
        assert!("engine.labels.disk==ssd".parse::<Constraint>().is_ok());
        for (bad, says) in [
            ("node.labels.zone=a", "has no `==` or `!=`"),
            ("node.zone==a", "`node.zone` is not a node attribute"),
            ("node.labels.==a", "is not a node attribute"),
            ("node.labels.zone==", "cannot be the value"),
            ("node.labels.zone==a b", "cannot be the value"),
            ("node.role==boss", "not a node role"),
            ("==a", "is not a node attribute"),
        ] {
            let e = bad.parse::<Constraint>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_constraint_holds_on_the_nodes_it_names() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let none = BTreeMap::new();
        let node = NodeAttributes {
            id: "x1",
            hostname: "n1",
            role: "worker",
            os: "linux",
            arch: "x86_64",
            labels: &labels,
            engine_labels: &none,
        };
        let holds = |c: &str| c.parse::<Constraint>().unwrap().holds(&node);
        assert!(holds("node.labels.zone==a"));
        assert!(!holds("node.labels.zone!=a"));
        assert!(!holds("node.labels.zone==b"));
        assert!(!holds("node.labels.disk==ssd"), "a missing label equals nothing");
        assert!(holds("node.labels.disk!=ssd"));
        assert!(holds("node.hostname==n1") && holds("node.id!=x2") && holds("node.role==WORKER"));
        assert!(holds("node.platform.os==linux") && !holds("engine.labels.disk==ssd"));
        assert!(Constraint::node_id("x1").holds(&node));
    }

    #[test]
    fn spread_is_over_node_labels() {
        assert_eq!(spread_label("node.labels.zone"), Ok("zone"));
        assert!(spread_label("node.hostname").unwrap_err().contains("expected a node label"));
        assert!(spread_label("node.labels.").is_err());
    }
}
