//! Which roles a template reads from `peers`, found in its text before it is rendered, so
//! that the master knows whose membership changes must render a minion again (its *view*).
//! A scan of Tera's syntax for the `peers` variable, so it lives beside the templates.

use std::collections::BTreeSet;

/// Adds to `names` the roles `text` reads from `peers` as `peers.<name>` or
/// `peers["<name>"]`; false if it uses `peers` any other way (`{% for r, m in peers %}`,
/// `peers[var]`, or just the word), which then means every role.
pub fn peer_reads(text: &str, names: &mut BTreeSet<String>) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("peers") {
        let (start, end) = (from + at, from + at + "peers".len());
        from = end;
        if (start > 0 && ident(bytes[start - 1])) || bytes.get(end).is_some_and(|&b| ident(b)) {
            continue; // part of another word
        }
        let rest = &text[end..];
        if let Some(after) = rest.strip_prefix('.') {
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name.is_empty() {
                return false;
            }
            names.insert(name);
            continue;
        }
        let quoted = rest.strip_prefix('[').map(str::trim_start).and_then(|inside| {
            let quote = inside.chars().next().filter(|q| *q == '"' || *q == '\'')?;
            let body = &inside[1..];
            body.find(quote).map(|close| body[..close].to_string())
        });
        match quoted {
            Some(name) => {
                names.insert(name);
            }
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_reads_by_name_or_every_role() {
        let reads = |text: &str| {
            let mut names = BTreeSet::new();
            peer_reads(text, &mut names).then(|| names.into_iter().collect::<Vec<_>>())
        };
        assert_eq!(reads("no mention"), Some(vec![]));
        assert_eq!(
            reads("{% for p in peers.db %}{{ peers['web-ui'][0].address }}{{ peers[ \"x\" ] }}"),
            Some(vec!["db".into(), "web-ui".into(), "x".into()])
        );
        assert_eq!(reads("mypeers.a peership"), Some(vec![]), "other words");
        assert_eq!(reads("{% for role, members in peers %}"), None);
        assert_eq!(reads("{{ peers[pillar.role] }}"), None);
        assert_eq!(reads("description: finds its peers"), None);
        assert_eq!(reads("{{ peers.db }} {{ peers | json }}"), None);
    }
}
