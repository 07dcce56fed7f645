//! Users and groups as pure text transformations of /etc/passwd, /etc/group and
//! /etc/shadow: existing entries are updated in place, new ones appended, comments
//! and blank lines kept. Applying the same users twice gives the same texts.

use std::collections::BTreeSet;

use super::plan::{PlannedGroup, PlannedUser};

/// First id allocated to a new user or group.
pub const FIRST_ID: u32 = 1000;
/// Last id allocated to a new user or group.
pub const LAST_ID: u32 = 60000;

/// The texts of /etc/passwd, /etc/group and /etc/shadow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFiles {
    /// /etc/passwd.
    pub passwd: String,
    /// /etc/group.
    pub group: String,
    /// /etc/shadow.
    pub shadow: String,
}

/// A planned user as it ends up in the new passwd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUser {
    /// Login name.
    pub name: String,
    /// Final uid.
    pub uid: u32,
    /// Final primary gid.
    pub gid: u32,
    /// Final home directory (absolute path in the booted system).
    pub home: String,
}

/// Result of [`merge_accounts`]: the new texts and the planned users' final entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsUpdate {
    /// New file texts.
    pub files: AccountFiles,
    /// One entry per planned user, in plan order.
    pub users: Vec<AccountUser>,
}

/// Why the account files could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    /// An existing line does not have the expected shape.
    #[error("{file} line {line}: {reason}")]
    Malformed { file: &'static str, line: usize, reason: String },
    /// The plan lists a user or group name twice.
    #[error("{kind} {name} is listed twice")]
    Duplicate { kind: &'static str, name: String },
    /// The requested uid belongs to another user.
    #[error("uid {id} of user {name} is already used by user {other}")]
    UidTaken { id: u32, name: String, other: String },
    /// The requested gid belongs to another group.
    #[error("gid {id} of group {name} is already used by group {other}")]
    GidTaken { id: u32, name: String, other: String },
    /// A supplementary group that neither exists nor is planned.
    #[error("user {user}: group {group} does not exist")]
    UnknownGroup { user: String, group: String },
    /// A value that would break the colon-separated format.
    #[error("{what} {value:?} contains ':', a newline or is empty")]
    BadField { what: &'static str, value: String },
    /// Every id from 1000 to 60000 is taken.
    #[error("no free {kind} id between 1000 and 60000")]
    Exhausted { kind: &'static str },
}

/// A colon-separated database: entries keep their position; other lines are kept verbatim.
struct Table {
    lines: Vec<Line>,
}

enum Line {
    Entry(Vec<String>),
    Raw(String),
}

impl Table {
    fn parse(text: &str, file: &'static str, fields: usize) -> Result<Table, AccountsError> {
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                lines.push(Line::Raw(line.to_string()));
                continue;
            }
            let mut parts: Vec<String> = line.split(':').map(str::to_string).collect();
            if parts.len() < fields {
                // shadow lines may omit trailing empty fields
                if file != "/etc/shadow" || parts.len() < 2 {
                    let reason = format!("expected {fields} fields, found {}", parts.len());
                    return Err(AccountsError::Malformed { file, line: i + 1, reason });
                }
                parts.resize(fields, String::new());
            }
            lines.push(Line::Entry(parts));
        }
        Ok(Table { lines })
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Entry(parts) => out.push_str(&parts.join(":")),
                Line::Raw(raw) => out.push_str(raw),
            }
            out.push('\n');
        }
        out
    }

    fn entries(&self) -> impl Iterator<Item = &Vec<String>> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(p) => Some(p),
            Line::Raw(_) => None,
        })
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        self.lines.iter_mut().find_map(|l| match l {
            Line::Entry(p) if p[0] == name => Some(p),
            _ => None,
        })
    }

    fn find(&self, name: &str) -> Option<&Vec<String>> {
        self.entries().find(|p| p[0] == name)
    }

    /// The name of the entry other than `name` whose field `idx` is `id`.
    fn id_owner(&self, idx: usize, id: u32, name: &str) -> Option<String> {
        self.entries().find(|p| p[0] != name && p[idx].parse::<u32>() == Ok(id)).map(|p| p[0].clone())
    }

    fn ids(&self, idx: usize) -> BTreeSet<u32> {
        self.entries().filter_map(|p| p[idx].parse().ok()).collect()
    }

    fn push(&mut self, parts: Vec<String>) {
        self.lines.push(Line::Entry(parts));
    }
}

fn check_field(what: &'static str, value: &str) -> Result<(), AccountsError> {
    if value.is_empty() || value.contains([':', '\n']) {
        return Err(AccountsError::BadField { what, value: value.to_string() });
    }
    Ok(())
}

fn free_id(used: &BTreeSet<u32>, kind: &'static str) -> Result<u32, AccountsError> {
    (FIRST_ID..=LAST_ID).find(|id| !used.contains(id)).ok_or(AccountsError::Exhausted { kind })
}

fn check_unique<'a>(kind: &'static str, names: impl Iterator<Item = &'a str>) -> Result<(), AccountsError> {
    let mut seen = BTreeSet::new();
    for name in names {
        check_field(if kind == "user" { "user name" } else { "group name" }, name)?;
        if !seen.insert(name) {
            return Err(AccountsError::Duplicate { kind, name: name.to_string() });
        }
    }
    Ok(())
}

/// Produces the new passwd, group and shadow texts with `groups` and `users` added
/// or updated (groups first, so users can name them).
pub fn merge_accounts(existing: &AccountFiles, users: &[PlannedUser], groups: &[PlannedGroup]) -> Result<AccountsUpdate, AccountsError> {
    check_unique("user", users.iter().map(|u| u.name.as_str()))?;
    check_unique("group", groups.iter().map(|g| g.name.as_str()))?;
    let mut passwd = Table::parse(&existing.passwd, "/etc/passwd", 7)?;
    let mut group = Table::parse(&existing.group, "/etc/group", 4)?;
    let mut shadow = Table::parse(&existing.shadow, "/etc/shadow", 9)?;
    for g in groups {
        merge_group(&mut group, g)?;
    }
    let mut out = Vec::new();
    for u in users {
        out.push(merge_user(&mut passwd, &mut group, &mut shadow, u)?);
    }
    let files = AccountFiles { passwd: passwd.render(), group: group.render(), shadow: shadow.render() };
    Ok(AccountsUpdate { files, users: out })
}

fn merge_group(group: &mut Table, g: &PlannedGroup) -> Result<(), AccountsError> {
    if let Some(hash) = &g.password_hash {
        check_field("group password hash", hash)?;
    }
    if let Some(id) = g.gid {
        if let Some(other) = group.id_owner(2, id, &g.name) {
            return Err(AccountsError::GidTaken { id, name: g.name.clone(), other });
        }
    }
    if group.find(&g.name).is_none() {
        let gid = match g.gid {
            Some(id) => id,
            None => free_id(&group.ids(2), "group")?,
        };
        group.push(vec![g.name.clone(), "x".into(), gid.to_string(), String::new()]);
    }
    let entry = group.find_mut(&g.name).expect("group entry present");
    if let Some(id) = g.gid {
        entry[2] = id.to_string();
    }
    if let Some(hash) = &g.password_hash {
        entry[1] = hash.clone();
    }
    Ok(())
}

fn merge_user(passwd: &mut Table, group: &mut Table, shadow: &mut Table, u: &PlannedUser) -> Result<AccountUser, AccountsError> {
    check_user_fields(u)?;
    if let Some(id) = u.uid {
        if let Some(other) = passwd.id_owner(2, id, &u.name) {
            return Err(AccountsError::UidTaken { id, name: u.name.clone(), other });
        }
    }
    for g in &u.groups {
        if group.find(g).is_none() {
            return Err(AccountsError::UnknownGroup { user: u.name.clone(), group: g.clone() });
        }
    }
    if passwd.find(&u.name).is_none() {
        add_user(passwd, group, u)?;
    }
    let entry = passwd.find_mut(&u.name).expect("user entry present");
    if let Some(id) = u.uid {
        entry[2] = id.to_string();
    }
    if let Some(shell) = &u.shell {
        entry[6] = shell.clone();
    }
    if let Some(home) = &u.home_dir {
        entry[5] = home.clone();
    }
    let malformed = |reason: &str| AccountsError::Malformed { file: "/etc/passwd", line: 0, reason: format!("user {}: {reason}", u.name) };
    let user = AccountUser {
        name: u.name.clone(),
        uid: entry[2].parse().map_err(|_| malformed("uid is not a number"))?,
        gid: entry[3].parse().map_err(|_| malformed("gid is not a number"))?,
        home: entry[5].clone(),
    };
    for g in &u.groups {
        add_member(group, g, &u.name);
    }
    merge_shadow(shadow, u);
    Ok(user)
}

fn check_user_fields(u: &PlannedUser) -> Result<(), AccountsError> {
    for (what, value) in [("shell", &u.shell), ("home directory", &u.home_dir), ("password hash", &u.password_hash)] {
        if let Some(v) = value {
            check_field(what, v)?;
        }
    }
    for key in &u.ssh_authorized_keys {
        if key.contains('\n') {
            return Err(AccountsError::BadField { what: "ssh key", value: key.clone() });
        }
    }
    Ok(())
}

/// Appends a new passwd entry and, unless a group of that name exists, its primary
/// group (gid = uid when free).
fn add_user(passwd: &mut Table, group: &mut Table, u: &PlannedUser) -> Result<(), AccountsError> {
    let uid = match u.uid {
        Some(id) => id,
        None => free_id(&passwd.ids(2), "uid")?,
    };
    let gid = match group.find(&u.name) {
        Some(p) => p[2].clone(),
        None => {
            let used = group.ids(2);
            let gid = if used.contains(&uid) { free_id(&used, "gid")? } else { uid };
            group.push(vec![u.name.clone(), "x".into(), gid.to_string(), String::new()]);
            gid.to_string()
        }
    };
    passwd.push(vec![u.name.clone(), "x".into(), uid.to_string(), gid, String::new(), format!("/home/{}", u.name), "/bin/sh".into()]);
    Ok(())
}

fn add_member(group: &mut Table, name: &str, user: &str) {
    if let Some(entry) = group.find_mut(name) {
        let mut members: Vec<&str> = entry[3].split(',').filter(|m| !m.is_empty()).collect();
        if !members.contains(&user) {
            members.push(user);
            entry[3] = members.join(",");
        }
    }
}

fn merge_shadow(shadow: &mut Table, u: &PlannedUser) {
    match shadow.find_mut(&u.name) {
        Some(entry) => {
            if let Some(hash) = &u.password_hash {
                entry[1] = hash.clone();
            }
        }
        None => {
            let hash = u.password_hash.clone().unwrap_or_else(|| "!".into());
            let mut parts = vec![u.name.clone(), hash];
            parts.resize(9, String::new());
            shadow.push(parts);
        }
    }
}

/// The uid of `name` in a passwd text.
pub fn user_id(passwd: &str, name: &str) -> Option<u32> {
    lookup(passwd, name)
}

/// The gid of `name` in a group text.
pub fn group_id(group: &str, name: &str) -> Option<u32> {
    lookup(group, name)
}

fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|p| p.len() > 2 && p[0] == name).and_then(|p| p[2].parse().ok())
}

#[cfg(test)]
#[path = "accounts_tests.rs"]
mod tests;
