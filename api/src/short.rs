//! How commit ids and content hashes are shown to people: one rule for the master, the
//! minion and the CLI, so that a commit reads the same in `roles status`, a minion's log and
//! `drover ps`.

/// Hex digits shown: Docker's length for ids, and unambiguous in repositories with millions
/// of objects (git's own 7 is not, past a few thousand).
pub const SHORT_LEN: usize = 12;

/// A commit id or a content hash as people read it: the first [`SHORT_LEN`] hex digits,
/// without `sha256:`. Anything else (a tag such as `v1.4`, a short id already, a branch
/// name) is shown whole.
pub fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if id.len() > SHORT_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) { &id[..SHORT_LEN] } else { id }
}

/// [`short`], keeping the `-dirty` suffix of a commit built from an uncommitted tree.
pub fn short_commit(commit: &str) -> String {
    match commit.strip_suffix("-dirty") {
        Some(c) => format!("{}-dirty", short(c)),
        None => short(commit).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_and_names_are_kept() {
        let commit = "3f2a1c9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39";
        assert_eq!(short(commit), "3f2a1c9d8e7b");
        assert_eq!(short(&format!("sha256:{commit}")), "3f2a1c9d8e7b");
        assert_eq!(short("3f2a1c9"), "3f2a1c9");
        assert_eq!(short("v1.4"), "v1.4");
        assert_eq!(short("release-candidate-branch"), "release-candidate-branch");
        assert_eq!(short("é".repeat(20).as_str()), "é".repeat(20));
        assert_eq!(short(""), "");
        assert_eq!(short_commit(&format!("{commit}-dirty")), "3f2a1c9d8e7b-dirty");
        assert_eq!(short_commit(commit), "3f2a1c9d8e7b");
    }
}
