//! A Butane-like config, as an operator would write it for keel, parses clean.

use super::ok;
use crate::firstboot::config::{Compression, HashAlgorithm, IdOrName};

const BUTANE_LIKE: &str = r#"{
  "ignition": {
    "version": "3.4.0",
    "timeouts": { "httpTotal": 60 }
  },
  "passwd": {
    "users": [
      {
        "name": "core",
        "groups": ["wheel", "docker"],
        "sshAuthorizedKeys": [
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKz0lQHxT3aZ core@laptop",
          "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 ops@bastion"
        ],
        "passwordHash": "$6$rounds=4096$salt$hash",
        "shell": "/bin/sh"
      },
      { "name": "app", "uid": 1500, "homeDir": "/var/lib/app" }
    ],
    "groups": [ { "name": "docker", "gid": 990 } ]
  },
  "storage": {
    "directories": [
      { "path": "/etc/keel/containers", "mode": 493 },
      { "path": "/var/lib/app/data", "mode": 488, "user": { "name": "app" }, "group": { "id": 1500 } }
    ],
    "files": [
      {
        "path": "/etc/hostname",
        "mode": 420,
        "overwrite": true,
        "contents": { "source": "data:,keel-node-1%0A" }
      },
      {
        "path": "/etc/keel/containers/web.toml",
        "mode": 420,
        "contents": {
          "source": "data:;base64,W2NvbnRhaW5lcl0KaW1hZ2UgPSAiZG9ja2VyLmlvL2xpYnJhcnkvbmdpbng6MS4yNyIKcG9ydHMgPSBbIjgwOjgwIl0K"
        }
      },
      {
        "path": "/etc/keel/network.toml",
        "contents": {
          "compression": "gzip",
          "source": "data:;base64,H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==",
          "verification": { "hash": "sha512-cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e" }
        }
      },
      {
        "path": "/opt/app/config.json",
        "contents": { "source": "https://config.example.com/app.json" },
        "append": [ { "source": "data:,%7B%22extra%22%3Atrue%7D" } ],
        "user": { "id": 1500 }
      }
    ],
    "links": [
      { "path": "/etc/localtime", "target": "../usr/share/zoneinfo/Europe/Berlin" },
      { "path": "/var/lib/app/current", "target": "/var/lib/app/data" }
    ]
  }
}"#;

#[test]
fn butane_like_config_parses_clean() {
    let (c, warnings) = ok(BUTANE_LIKE);
    assert!(warnings.problems.is_empty(), "{warnings}");
    assert_eq!(c.files.len(), 4);
    assert_eq!(c.directories.len(), 2);
    assert_eq!(c.links.len(), 2);
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.groups.len(), 1);
    assert_eq!(c.timeouts.http_total, Some(60));

    let hostname = &c.files[0];
    assert_eq!(hostname.mode, Some(0o644));
    assert!(hostname.overwrite);
    let web = &c.files[1];
    let bytes = crate::firstboot::config::decode_data_url(web.contents.as_ref().unwrap().source.as_deref().unwrap()).unwrap();
    assert!(String::from_utf8(bytes).unwrap().contains("nginx"));
    let net = c.files[2].contents.as_ref().unwrap();
    assert_eq!(net.compression, Some(Compression::Gzip));
    assert_eq!(net.verification.as_ref().unwrap().algorithm, HashAlgorithm::Sha512);
    assert_eq!(c.files[3].append.len(), 1);
    assert_eq!(c.files[3].owner.user, Some(IdOrName::Id(1500)));

    assert_eq!(c.directories[1].mode, Some(0o750));
    assert_eq!(c.directories[1].owner.user, Some(IdOrName::Name("app".into())));
    let core = &c.users[0];
    assert_eq!(core.ssh_authorized_keys.len(), 2);
    assert_eq!(core.groups, ["wheel", "docker"]);
    assert_eq!(c.users[1].uid, Some(1500));
    assert_eq!(c.groups[0].gid, Some(990));
}

#[test]
fn the_same_config_in_every_version_from_3_1() {
    for minor in 1..=6 {
        ok(&BUTANE_LIKE.replace("3.4.0", &format!("3.{minor}.0")));
    }
}
