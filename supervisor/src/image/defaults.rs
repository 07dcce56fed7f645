//! An image config's process settings as defaults that the container declaration
//! overrides, the way `docker run` combines them (pure):
//!
//! - `entrypoint` replaces the image's Entrypoint and drops its Cmd (`--entrypoint`);
//! - `command` (+ `args`) replaces the image's Cmd (`docker run IMAGE CMD…`);
//! - `env` entries override the image's Env by name; the rest of Env is kept;
//! - `workdir` and `user` replace WorkingDir and User.
//!
//! ExposedPorts are not published (neither does `docker run` without `-P`): they are
//! shown by `keelctl image inspect`, and `ports` in the declaration publishes.

use super::oci::ProcessConfig;
use crate::spec::ContainerSpec;
use std::path::PathBuf;

/// `spec` with its process filled in from the image config `image`.
pub fn apply(spec: &ContainerSpec, image: &ProcessConfig) -> Result<ContainerSpec, String> {
    let declared = &spec.declared;
    let (entrypoint, cmd) = match &declared.entrypoint {
        Some(entrypoint) => (entrypoint.clone(), declared.command.clone().unwrap_or_default()),
        None => (image.entrypoint.clone().unwrap_or_default(), declared.command.clone().or_else(|| image.cmd.clone()).unwrap_or_default()),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err("no command: the image has no Entrypoint or Cmd and the declaration sets neither entrypoint nor command".into());
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for item in image.env.iter().flatten() {
        let (key, value) = item.split_once('=').unwrap_or((item.as_str(), ""));
        if !spec.env.iter().any(|(k, _)| k == key) {
            env.push((key.to_string(), value.to_string()));
        }
    }
    env.extend(spec.env.iter().cloned());
    env.sort();
    let workdir = match (&declared.workdir, image.working_dir.as_deref().filter(|w| !w.is_empty())) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => PathBuf::from("/").join(dir),
        (None, None) => PathBuf::from("/"),
    };
    let user = match (&declared.user, image.user.as_deref().filter(|u| !u.is_empty())) {
        (Some(user), _) => user.clone(),
        (None, Some(user)) => crate::spec::validate_user(user).map_err(|e| format!("image config User: {e}"))?,
        (None, None) => spec.user.clone(),
    };
    Ok(ContainerSpec { argv, env, workdir, user, ..spec.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{parse, UserSpec};

    fn spec(extra: &str) -> ContainerSpec {
        parse("app", &format!("image = \"oci-archive:/i.tar\"\n{extra}"), "app.toml").unwrap()
    }

    fn image() -> ProcessConfig {
        ProcessConfig {
            entrypoint: Some(vec!["/bin/server".into()]),
            cmd: Some(vec!["--port".into(), "80".into()]),
            env: Some(vec!["PATH=/usr/bin:/bin".into(), "MODE=image".into()]),
            working_dir: Some("/srv".into()),
            user: Some("1000:1000".into()),
            exposed_ports: None,
        }
    }

    #[test]
    fn image_defaults_apply_when_nothing_is_declared() {
        let s = apply(&spec(""), &image()).unwrap();
        assert_eq!(s.argv, ["/bin/server", "--port", "80"]);
        assert_eq!(s.env, [("MODE".into(), "image".into()), ("PATH".into(), "/usr/bin:/bin".into())]);
        assert_eq!(s.workdir, PathBuf::from("/srv"));
        assert_eq!(s.user, UserSpec::Id { uid: 1000, gid: Some(1000) });
    }

    #[test]
    fn declaration_overrides_like_docker_run() {
        let s = apply(&spec("command = [\"--port\", \"8080\"]\nenv = { MODE = \"toml\" }\nworkdir = \"/tmp\"\nuser = \"0\""), &image())
            .unwrap();
        assert_eq!(s.argv, ["/bin/server", "--port", "8080"]);
        assert!(s.env.contains(&("MODE".into(), "toml".into())));
        assert!(s.env.contains(&("PATH".into(), "/usr/bin:/bin".into())));
        assert_eq!(s.workdir, PathBuf::from("/tmp"));
        assert_eq!(s.user, UserSpec::Id { uid: 0, gid: None });
        // entrypoint drops the image's Cmd.
        let e = apply(&spec("entrypoint = \"/bin/sh\"\nargs = [\"-c\", \"true\"]"), &image()).unwrap();
        assert_eq!(e.argv, ["/bin/sh", "-c", "true"]);
        let only = apply(&spec("entrypoint = \"/bin/sh\""), &image()).unwrap();
        assert_eq!(only.argv, ["/bin/sh"]);
    }

    #[test]
    fn an_image_without_a_command_needs_one_declared() {
        let err = apply(&spec(""), &ProcessConfig::default()).unwrap_err();
        assert!(err.contains("no command"), "{err}");
        assert_eq!(apply(&spec("command = \"/bin/true\""), &ProcessConfig::default()).unwrap().argv, ["/bin/true"]);
    }
}
