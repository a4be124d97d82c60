//! Running a child as another user: `cmd.run runas=…` and a daemon's `user`.
//!
//! The user is looked up in the user database (uid, primary gid, supplementary groups,
//! home, shell) before anything starts, so a missing user is a clear error rather than a
//! failed exec. The switch itself happens in the child between fork and exec
//! (`setgroups`, `setgid`, `setuid`, in that order), which only root may do: a minion that
//! is not root can run a child only as its own user, and says so for any other.

use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User, geteuid, getgrouplist};

/// A user to run as, looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (with the primary group), from the group database.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunasError {
    #[error("no user named '{0}' on this minion")]
    NoSuchUser(String),
    #[error("cannot look up user '{user}': {cause}")]
    Lookup { user: String, cause: String },
    #[error("cannot run as '{user}': switching users needs root, and the minion runs as uid {euid}")]
    NotRoot { user: String, euid: u32 },
}

impl Account {
    /// Looks `name` up (a user name; a number is read as a uid).
    pub fn lookup(name: &str) -> Result<Account, RunasError> {
        let lookup_err = |cause: String| RunasError::Lookup { user: name.to_string(), cause };
        let user = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(name),
        }
        .map_err(|e| lookup_err(e.to_string()))?
        .ok_or_else(|| RunasError::NoSuchUser(name.to_string()))?;
        let cname = CString::new(user.name.clone()).map_err(|e| lookup_err(e.to_string()))?;
        let groups = getgrouplist(&cname, user.gid)
            .map_err(|e| lookup_err(format!("cannot list its groups: {e}")))?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Ok(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
            home: user.dir,
            shell: user.shell,
        })
    }

    /// Whether a child must switch to become this user (it is not the minion's own user).
    fn needs_switch(&self) -> bool {
        geteuid().as_raw() != self.uid
    }

    /// Checks the switch is possible: root, or already this user.
    pub fn check(&self) -> Result<(), RunasError> {
        let euid = geteuid().as_raw();
        if self.needs_switch() && euid != 0 {
            return Err(RunasError::NotRoot { user: self.name.clone(), euid });
        }
        Ok(())
    }

    /// Makes `cmd` run as this user: `HOME`, `USER`, `LOGNAME` and `SHELL` of the user (set
    /// before the caller's own env, which may override them), and the switch in the child.
    pub fn apply(&self, cmd: &mut std::process::Command) -> Result<(), RunasError> {
        self.check()?;
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("SHELL", &self.shell);
        if self.needs_switch() {
            switch_in_child(cmd, self.uid, self.gid, self.groups.clone());
        }
        Ok(())
    }
}

/// Sets groups, gid then uid in the child, after fork and before exec.
///
/// std's `CommandExt::uid`/`gid` would drop every supplementary group (and its `groups` is
/// unstable), and a `pre_exec` hook runs after std's own uid switch, so the whole switch is
/// done here.
#[allow(unsafe_code)]
fn switch_in_child(cmd: &mut std::process::Command, uid: u32, gid: u32, groups: Vec<u32>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child and only makes the setgroups, setgid and
    // setuid system calls (what std itself does there for `uid`/`gid`) on data prepared
    // before the fork; it allocates nothing and takes no lock. `last_os_error` reads errno.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_name_what_is_missing() {
        let root = Account::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid, root.name.as_str()), (0, 0, "root"));
        assert!(root.groups.contains(&0));
        assert_eq!(Account::lookup("0").unwrap().name, "root");
        assert_eq!(
            Account::lookup("no-such-user-drover").unwrap_err(),
            RunasError::NoSuchUser("no-such-user-drover".into())
        );
    }

    #[test]
    fn runs_as_another_user_only_as_root() {
        let nobody = Account::lookup("nobody").unwrap();
        let mut cmd = std::process::Command::new("id");
        match nobody.apply(&mut cmd) {
            Ok(()) => {
                assert!(geteuid().is_root());
                let out = cmd.output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.starts_with(&format!("uid={}(nobody) gid={}", nobody.uid, nobody.gid)),
                    "{text}"
                );
            }
            Err(e) => {
                assert!(!geteuid().is_root());
                assert!(e.to_string().contains("switching users needs root"), "{e}");
            }
        }
    }
}
