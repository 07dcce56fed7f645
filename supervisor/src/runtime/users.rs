//! Resolving the declared `user` against the image's /etc/passwd.

use crate::spec::UserSpec;

/// The uid and gid a container process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Resolve `user` with the text of the image's /etc/passwd (empty if it has none).
pub fn resolve(user: &UserSpec, passwd: &str) -> Result<Identity, String> {
    let entries = passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let uid = fields.get(2)?.parse::<u32>().ok()?;
        let gid = fields.get(3)?.parse::<u32>().ok()?;
        Some((fields[0], uid, gid))
    });
    match user {
        UserSpec::Id { uid, gid: Some(gid) } => Ok(Identity { uid: *uid, gid: *gid }),
        UserSpec::Id { uid, gid: None } => {
            let gid = entries.clone().find(|(_, u, _)| u == uid).map(|(_, _, g)| g).unwrap_or(*uid);
            Ok(Identity { uid: *uid, gid })
        }
        UserSpec::Name(name) => entries
            .clone()
            .find(|(n, _, _)| n == name)
            .map(|(_, uid, gid)| Identity { uid, gid })
            .ok_or_else(|| format!("user {name:?} is not in the image's /etc/passwd")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nweb:x:1000:50::/:/bin/sh\n";

    #[test]
    fn names_and_ids() {
        assert_eq!(resolve(&UserSpec::Name("web".into()), PASSWD).unwrap(), Identity { uid: 1000, gid: 50 });
        assert_eq!(resolve(&UserSpec::Id { uid: 1000, gid: None }, PASSWD).unwrap(), Identity { uid: 1000, gid: 50 });
        assert_eq!(resolve(&UserSpec::Id { uid: 7, gid: None }, PASSWD).unwrap(), Identity { uid: 7, gid: 7 });
        assert_eq!(resolve(&UserSpec::Id { uid: 7, gid: Some(8) }, "").unwrap(), Identity { uid: 7, gid: 8 });
        assert!(resolve(&UserSpec::Name("ghost".into()), PASSWD).unwrap_err().contains("ghost"));
    }
}
