//! The report: what the translation left out, and what it translated in a way worth knowing.

use std::fmt;

use serde::Serialize;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Not translated: the app under drover lacks it (exit status 1).
    LeftOut,
    /// Translated, differently from Compose in a way the user should know.
    Note,
}

/// One finding, at the place in a user's file it is about: `docker-compose.yml:12:5:
/// services.web.privileged: left out: …`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Finding {
    /// Relative to the compose file's folder: `docker-compose.yml`, `web/Dockerfile`.
    pub file: String,
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    /// 1-based, in characters; 0 when unknown.
    pub col: usize,
    /// The key it is about: `services.web.privileged` (empty for a whole file).
    pub key: String,
    pub level: Level,
    pub message: String,
}

impl Finding {
    pub fn left_out(&self) -> bool {
        self.level == Level::LeftOut
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}: ", self.file)?,
            (line, 0) => write!(f, "{}:{line}: ", self.file)?,
            (line, col) => write!(f, "{}:{line}:{col}: ", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        let level = match self.level {
            Level::LeftOut => "left out",
            Level::Note => "note",
        };
        write!(f, "{level}: {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_a_diagnostic() {
        let f = Finding {
            file: "docker-compose.yml".into(),
            line: 12,
            col: 5,
            key: "services.web.privileged".into(),
            level: Level::LeftOut,
            message: "drover runs no privileged container".into(),
        };
        assert_eq!(
            f.to_string(),
            "docker-compose.yml:12:5: services.web.privileged: left out: drover runs no privileged container"
        );
        let whole = Finding { line: 0, key: String::new(), level: Level::Note, ..f };
        assert_eq!(whole.to_string(), "docker-compose.yml: note: drover runs no privileged container");
    }
}
