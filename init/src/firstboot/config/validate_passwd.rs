//! Rules for `passwd`. Ignition's: no user, group, group of a user or SSH key of a
//! user twice. keel's own (Ignition accepts these and fails at first boot, or writes
//! broken files): names valid for useradd; fields that cannot break /etc/passwd,
//! /etc/group or /etc/shadow (no ':' or newlines); absolute shells and homes;
//! non-empty SSH keys; ids other than 2³²−1.

use super::report::JsonPath;
use super::types::Config;
use super::validate::{check_clean_path, Checker};
use std::collections::{HashMap, HashSet};

/// Longest accepted user or group name (the useradd limit).
pub const MAX_NAME_LEN: usize = 32;

/// Checks a user or group name: `[a-z_][a-z0-9_-]*` with an optional final `$`, up
/// to [`MAX_NAME_LEN`] characters (shadow-utils' default NAME_REGEX).
pub fn check_name(name: &str) -> Result<(), String> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if name.is_empty() {
        Err("name is empty".into())
    } else if name.len() > MAX_NAME_LEN {
        Err(format!("name {name:?} is longer than {MAX_NAME_LEN} characters"))
    } else if !first_ok || !rest_ok {
        Err(format!("name {name:?} is not valid: use lowercase letters, digits, '_' and '-', starting with a letter or '_'"))
    } else {
        Ok(())
    }
}

fn check_field(value: &str, what: &str) -> Result<(), String> {
    if value.contains([':', '\n', '\r', '\0']) {
        Err(format!("{what} must not contain ':', a newline or NUL"))
    } else {
        Ok(())
    }
}

/// Checks one authorized_keys line.
pub fn check_ssh_key(key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        Err("SSH key is empty".into())
    } else if key.contains(['\n', '\r', '\0']) {
        Err("SSH key contains a line break; give one key per list entry".into())
    } else {
        Ok(())
    }
}

/// Checks users and groups.
pub fn check_passwd(c: &mut Checker<'_>, config: &Config) {
    let mut seen: HashMap<&str, JsonPath> = HashMap::new();
    for (i, u) in config.users.iter().enumerate() {
        let p = c.entry(&["passwd", "users"], i);
        check_unique_name(c, &u.name, &p, &mut seen);
        check_id(c, u.uid, &p.key("uid"));
        let mut seen_groups = HashSet::new();
        for (j, g) in u.groups.iter().enumerate() {
            if !seen_groups.insert(g) {
                c.error(&p.key("groups").index(j), format!("group {g:?} is listed twice"));
            } else if let Err(e) = check_name(g) {
                c.error(&p.key("groups").index(j), e);
            }
        }
        for (key, value) in [("shell", &u.shell), ("homeDir", &u.home_dir)] {
            if let Some(v) = value {
                if let Err(e) = check_clean_path(v).and_then(|()| check_field(v, key)) {
                    c.error(&p.key(key), e);
                }
            }
        }
        if let Some(h) = &u.password_hash {
            if let Err(e) = check_field(h, "passwordHash") {
                c.error(&p.key("passwordHash"), e);
            }
        }
        let mut seen_keys = HashSet::new();
        for (j, k) in u.ssh_authorized_keys.iter().enumerate() {
            if !seen_keys.insert(k) {
                c.error(&p.key("sshAuthorizedKeys").index(j), "SSH key is listed twice".into());
            } else if let Err(e) = check_ssh_key(k) {
                c.error(&p.key("sshAuthorizedKeys").index(j), e);
            }
        }
    }
    let mut seen: HashMap<&str, JsonPath> = HashMap::new();
    for (i, g) in config.groups.iter().enumerate() {
        let p = c.entry(&["passwd", "groups"], i);
        check_unique_name(c, &g.name, &p, &mut seen);
        check_id(c, g.gid, &p.key("gid"));
        if let Some(h) = &g.password_hash {
            if let Err(e) = check_field(h, "passwordHash") {
                c.error(&p.key("passwordHash"), e);
            }
        }
    }
}

fn check_unique_name<'c>(c: &mut Checker<'_>, name: &'c str, entry: &JsonPath, seen: &mut HashMap<&'c str, JsonPath>) {
    let p = entry.key("name");
    if let Err(e) = check_name(name) {
        c.error(&p, e);
    } else if let Some(first) = seen.get(name) {
        c.error(&p, format!("duplicate name {name:?}: {first} already configures it"));
    } else {
        seen.insert(name, entry.clone());
    }
}

fn check_id(c: &mut Checker<'_>, id: Option<u32>, path: &JsonPath) {
    if id == Some(u32::MAX) {
        c.error(path, format!("id {} is reserved (it means -1)", u32::MAX));
    }
}
