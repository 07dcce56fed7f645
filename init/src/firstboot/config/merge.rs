//! Merging a fetched config (`ignition.config.merge`) over its parent, as Ignition does.
//!
//! The child wins. Keyed lists are merged by key, keeping the parent's order and
//! appending the child's new entries: files, directories and links by path (one
//! path space: a child file at a path drops a parent directory or link there),
//! users and groups by name, `append` fragments and merge references by source.
//! Within a keyed entry, every field the child sets replaces the parent's (a
//! resource is replaced whole); string lists (groups, SSH keys) are unions.
//! Limitation: `overwrite` and `hard` are plain booleans, so the child's value
//! always wins, even when the child did not write it.

use super::types::{Config, ConfigRef, DirEntry, FileEntry, Group, LinkEntry, Owner, ProxySettings, Resource, Timeouts, User};
use std::collections::HashSet;

/// Merges `child` over `parent` (child wins; lists merged by key).
pub fn merge(parent: Config, child: Config) -> Config {
    let file_paths: HashSet<String> = child.files.iter().map(|f| f.path.clone()).collect();
    let dir_paths: HashSet<String> = child.directories.iter().map(|d| d.path.clone()).collect();
    let link_paths: HashSet<String> = child.links.iter().map(|l| l.path.clone()).collect();
    let taken_elsewhere =
        |p: &str, own: &HashSet<String>| !own.contains(p) && (file_paths.contains(p) || dir_paths.contains(p) || link_paths.contains(p));
    let files = parent.files.into_iter().filter(|f| !taken_elsewhere(&f.path, &file_paths)).collect();
    let directories = parent.directories.into_iter().filter(|d| !taken_elsewhere(&d.path, &dir_paths)).collect();
    let links = parent.links.into_iter().filter(|l| !taken_elsewhere(&l.path, &link_paths)).collect();
    Config {
        files: merge_keyed(files, child.files, |f| f.path.clone(), merge_file),
        directories: merge_keyed(directories, child.directories, |d| d.path.clone(), merge_dir),
        links: merge_keyed(links, child.links, |l| l.path.clone(), merge_link),
        users: merge_keyed(parent.users, child.users, |u| u.name.clone(), merge_user),
        groups: merge_keyed(parent.groups, child.groups, |g| g.name.clone(), merge_group),
        merge: merge_keyed(parent.merge, child.merge, |r| r.source.clone(), |_, c: ConfigRef| c),
        replace: child.replace.or(parent.replace),
        timeouts: Timeouts {
            http_response_headers: child.timeouts.http_response_headers.or(parent.timeouts.http_response_headers),
            http_total: child.timeouts.http_total.or(parent.timeouts.http_total),
        },
        certificate_authorities: merge_keyed(
            parent.certificate_authorities,
            child.certificate_authorities,
            |r| r.source.clone(),
            |_, c: ConfigRef| c,
        ),
        proxy: ProxySettings {
            http_proxy: child.proxy.http_proxy.or(parent.proxy.http_proxy),
            https_proxy: child.proxy.https_proxy.or(parent.proxy.https_proxy),
            no_proxy: merge_keyed(parent.proxy.no_proxy, child.proxy.no_proxy, |s| s.clone(), |_, c| c),
        },
    }
}

/// Merges two keyed lists: parent order kept, matching child entries combined in
/// place, new child entries appended in their order.
fn merge_keyed<T>(parent: Vec<T>, child: Vec<T>, key: fn(&T) -> String, combine: fn(T, T) -> T) -> Vec<T> {
    let mut out: Vec<Option<T>> = parent.into_iter().map(Some).collect();
    let mut appended = Vec::new();
    for c in child {
        let k = key(&c);
        match out.iter().position(|p| p.as_ref().is_some_and(|p| key(p) == k)) {
            Some(i) => {
                let p = out[i].take();
                out[i] = p.map(|p| combine(p, c));
            }
            None => appended.push(c),
        }
    }
    out.into_iter().flatten().chain(appended).collect()
}

fn union(mut parent: Vec<String>, child: Vec<String>) -> Vec<String> {
    for c in child {
        if !parent.contains(&c) {
            parent.push(c);
        }
    }
    parent
}

fn merge_owner(p: Owner, c: Owner) -> Owner {
    Owner { user: c.user.or(p.user), group: c.group.or(p.group) }
}

fn merge_file(p: FileEntry, c: FileEntry) -> FileEntry {
    let key = |r: &Resource| r.source.clone().unwrap_or_default();
    FileEntry {
        path: c.path,
        contents: c.contents.or(p.contents),
        append: merge_keyed(p.append, c.append, key, |_, c| c),
        mode: c.mode.or(p.mode),
        owner: merge_owner(p.owner, c.owner),
        overwrite: c.overwrite,
    }
}

fn merge_dir(p: DirEntry, c: DirEntry) -> DirEntry {
    DirEntry { path: c.path, mode: c.mode.or(p.mode), owner: merge_owner(p.owner, c.owner), overwrite: c.overwrite }
}

fn merge_link(p: LinkEntry, c: LinkEntry) -> LinkEntry {
    let target = if c.target.is_empty() { p.target } else { c.target };
    LinkEntry { path: c.path, target, hard: c.hard, owner: merge_owner(p.owner, c.owner), overwrite: c.overwrite }
}

fn merge_user(p: User, c: User) -> User {
    User {
        name: c.name,
        uid: c.uid.or(p.uid),
        groups: union(p.groups, c.groups),
        shell: c.shell.or(p.shell),
        password_hash: c.password_hash.or(p.password_hash),
        ssh_authorized_keys: union(p.ssh_authorized_keys, c.ssh_authorized_keys),
        home_dir: c.home_dir.or(p.home_dir),
    }
}

fn merge_group(p: Group, c: Group) -> Group {
    Group { name: c.name, gid: c.gid.or(p.gid), password_hash: c.password_hash.or(p.password_hash) }
}
