//! Exit statuses: the contract scripts rely on.

use std::process::ExitCode;

/// How `drover` ends. Every error (bad flags, a target the master refuses, an unreachable
/// master, a target that matched no minion) is [`Exit::Usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every targeted minion returned, successfully.
    Success,
    /// Every targeted minion returned, and at least one failed.
    Failed,
    /// Usage or configuration error; nothing ran.
    Usage,
    /// At least one targeted minion did not return (timed out or not connected).
    NoReturn,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::NoReturn => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}
