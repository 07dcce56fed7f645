//! Walks `passwd` (users and groups). Supported user keys: name, uid, groups, shell,
//! passwordHash, sshAuthorizedKeys, homeDir. gecos, primaryGroup, noCreateHome,
//! noUserGroup, noLogInit and system are accepted only at their empty or default
//! values, shouldExist only as true: keel never deletes users, and anything it would
//! otherwise ignore is an error.

use super::json::Node;
use super::report::JsonPath;
use super::types::{Config, Group, User};
use super::walk::{key, key_since, KeyRule, Origins, Walker};
use super::walk_storage::each;

const USER_KEYS: &[KeyRule] = &[
    key("name"),
    key("uid"),
    key("groups"),
    key("shell"),
    key("passwordHash"),
    key("sshAuthorizedKeys"),
    key("homeDir"),
    key("gecos"),
    key("primaryGroup"),
    key("noCreateHome"),
    key("noUserGroup"),
    key("noLogInit"),
    key("system"),
    key_since("shouldExist", 2),
];
const GROUP_KEYS: &[KeyRule] = &[key("name"), key("gid"), key("passwordHash"), key("system"), key_since("shouldExist", 2)];

/// Walks `passwd`.
pub fn walk_passwd(w: &mut Walker<'_>, node: &Node, path: &JsonPath, config: &mut Config, origins: &mut Origins) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, &[key("users"), key("groups")]) {
        let p = path.key(&m.key);
        if m.key == "users" {
            each(w, &m.value, &p, walk_user, &mut config.users, &mut origins.users);
        } else {
            each(w, &m.value, &p, walk_group, &mut config.groups, &mut origins.groups);
        }
    }
}

fn walk_user(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<User> {
    let members = w.object(node, path)?;
    let mut u = User::default();
    let mut name = None;
    for m in w.known(members, path, USER_KEYS) {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "name" => name = Some(w.string(&m.value, &p)),
            "uid" => u.uid = w.uint(&m.value, &p),
            "groups" => u.groups = w.strings(&m.value, &p),
            "shell" => u.shell = w.string(&m.value, &p),
            "passwordHash" => u.password_hash = w.string(&m.value, &p),
            "sshAuthorizedKeys" => u.ssh_authorized_keys = w.strings(&m.value, &p),
            "homeDir" => u.home_dir = w.string(&m.value, &p),
            "gecos" => w.unsupported(m, path, "keel writes an empty GECOS field; remove it"),
            "primaryGroup" => {
                w.unsupported(m, path, "keel gives each user a primary group of the same name; list other groups in \"groups\"")
            }
            "noCreateHome" => w.unsupported(m, path, "keel always creates the home directory"),
            "noUserGroup" => w.unsupported(m, path, "keel always creates the user's own group"),
            "noLogInit" => w.unsupported(m, path, "keel keeps no lastlog/faillog; remove it"),
            "system" => w.unsupported(m, path, "give the user an explicit \"uid\" below 1000 instead"),
            _ => should_exist(w, &m.value, &p),
        }
    }
    null_name(w, node, path, &name);
    u.name = name??;
    Some(u)
}

fn walk_group(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<Group> {
    let members = w.object(node, path)?;
    let mut g = Group::default();
    let mut name = None;
    for m in w.known(members, path, GROUP_KEYS) {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "name" => name = Some(w.string(&m.value, &p)),
            "gid" => g.gid = w.uint(&m.value, &p),
            "passwordHash" => g.password_hash = w.string(&m.value, &p),
            "system" => w.unsupported(m, path, "give the group an explicit \"gid\" below 1000 instead"),
            _ => should_exist(w, &m.value, &p),
        }
    }
    null_name(w, node, path, &name);
    g.name = name??;
    Some(g)
}

/// keel's rule: a user or group needs a name (Ignition accepts none, or null, and
/// fails at first boot when useradd/groupadd refuse it). Never dropped silently.
fn null_name(w: &mut Walker<'_>, node: &Node, path: &JsonPath, name: &Option<Option<String>>) {
    match name {
        None => w.missing(path, node, "name"),
        Some(None) => {
            if let Some(m) = super::walk::member(node, "name").filter(|m| matches!(m.value.kind, super::json::Kind::Null)) {
                w.error(&path.key("name"), &m.value, "name is required (null is not a name)");
            }
        }
        Some(Some(_)) => {}
    }
}

fn should_exist(w: &mut Walker<'_>, node: &Node, path: &JsonPath) {
    if w.boolean(node, path) == Some(false) {
        w.error(path, node, "\"shouldExist\": false is not supported by keel: first boot never deletes users or groups");
    }
}
