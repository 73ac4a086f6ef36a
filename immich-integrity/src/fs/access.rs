//! Would the Immich server's user be allowed to read a file? Evaluated from mode bits, owner
//! and group of the file and of every directory above it (search bit), because the tool usually
//! runs as root, which reads everything.

use std::fmt;

/// A uid with its groups (`--as-user UID[:GID[,GID...]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// Primary and supplementary group ids (the first is the primary group).
    pub gids: Vec<u32>,
}

impl Identity {
    /// The identity this process runs with (effective uid, effective gid and supplementary groups).
    pub fn current() -> Identity {
        let uid = rustix::process::geteuid().as_raw();
        let mut gids = vec![rustix::process::getegid().as_raw()];
        if let Ok(groups) = rustix::process::getgroups() {
            gids.extend(groups.into_iter().map(|g| g.as_raw()));
        }
        Identity { uid, gids }
    }

    /// Parses `UID[:GID[,GID...]]`; without a group, the gid equals the uid.
    pub fn parse(s: &str) -> Result<Identity, String> {
        let bad = || format!("--as-user wants UID[:GID[,GID...]], got {s:?}");
        let (uid, gids) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let uid: u32 = uid.trim().parse().map_err(|_| bad())?;
        let gids = match gids {
            Some(g) => g
                .split(',')
                .map(|g| g.trim().parse::<u32>().map_err(|_| bad()))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![uid],
        };
        Ok(Identity { uid, gids })
    }

    /// Whether this identity has `want` (a mask of 4 = read, 1 = search) on an inode.
    pub fn allows(&self, mode: u32, owner: u32, group: u32, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bits = if owner == self.uid {
            (mode >> 6) & 7
        } else if self.gids.contains(&group) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uid)?;
        if let Some(g) = self.gids.first() {
            write!(f, ":{g}")?;
        }
        Ok(())
    }
}

/// Permission bit for reading a file (`r`), in the `rwx` triplet.
pub const READ: u32 = 4;
/// Permission bit for searching a directory (`x`), in the `rwx` triplet.
pub const SEARCH: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_bits_by_class() {
        let u = Identity::parse("1000:1000").unwrap();
        assert!(u.allows(0o644, 0, 0, READ));
        assert!(!u.allows(0o000, 1000, 1000, READ));
        assert!(!u.allows(0o600, 4242, 4242, READ));
        assert!(u.allows(0o640, 4242, 1000, READ));
        assert!(!u.allows(0o700, 4242, 4242, SEARCH));
        assert!(u.allows(0o711, 4242, 4242, SEARCH));
        // the owner class wins even when "others" would allow
        assert!(!u.allows(0o077, 1000, 0, READ));
        assert!(Identity::parse("0").unwrap().allows(0, 5, 5, READ));
    }

    #[test]
    fn parses_groups() {
        assert_eq!(
            Identity::parse("1000:100,44").unwrap(),
            Identity {
                uid: 1000,
                gids: vec![100, 44]
            }
        );
        assert_eq!(Identity::parse("33").unwrap().gids, vec![33]);
        assert!(Identity::parse("www-data").is_err());
    }
}
