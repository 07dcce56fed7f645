//! From raw TOML to a [`ContainerSpec`], collecting every problem.

use super::capability::CapabilityChoice;
use super::locate::line_of;
use super::raw::{RawContainer, RawDependsOn, RawHealthcheck, RawMount, RawResources, StringOrList};
use super::units::{parse_bytes, parse_duration, parse_signal};
use super::*;
use std::path::{Component, Path};

/// Collects problems with their key and line.
pub(super) struct Report<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<SpecError>,
}

impl Report<'_> {
    pub(super) fn add(&mut self, key: &str, message: impl Into<String>) {
        let path: Vec<&str> = key.split('.').collect();
        let line = line_of(self.text, &path).or_else(|| line_of(self.text, &path[..1]));
        self.errors.push(SpecError { file: self.file.into(), key: key.into(), line, message: message.into() });
    }

    /// Keep the value or record the error under `key`.
    pub(super) fn check<T, E: std::fmt::Display>(&mut self, key: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|error| self.add(key, error.to_string())).ok()
    }
}

/// Parse and validate the declaration `text` of container `name`, read from `file`.
pub fn parse(name: &str, text: &str, file: &str) -> Result<ContainerSpec, SpecErrors> {
    let mut report = Report { file, text, errors: Vec::new() };
    let raw: RawContainer = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().to_string();
            let key = unknown_key(&message).or_else(|| line.and_then(|l| key_on_line(text, l))).unwrap_or_default();
            return Err(SpecErrors(vec![SpecError { file: file.into(), key, line, message }]));
        }
    };
    let spec = build(name, raw, &mut report);
    match spec {
        Some(spec) if report.errors.is_empty() => Ok(spec),
        _ => Err(SpecErrors(report.errors)),
    }
}

/// The dotted key defined on 1-based `line` (`resources.pids_max` for `pids_max = …`
/// under `[resources]`), for a TOML error that names a place but not the key.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for raw in text.lines().take(line.saturating_sub(1)) {
        let trimmed = raw.trim();
        if trimmed.starts_with('[') {
            table = trimmed.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let (left, _) = text.lines().nth(line.checked_sub(1)?)?.split_once('=')?;
    let key = left.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(if table.is_empty() { key.to_string() } else { format!("{table}.{key}") })
}

/// The key toml names in "unknown field `x`".
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

fn build(name: &str, raw: RawContainer, r: &mut Report) -> Option<ContainerSpec> {
    let name = r.check("", ContainerName::new(name));
    let image = match &raw.image {
        Some(image) => r.check("image", image_ref(image)),
        None => r.check("image", Err::<ImageRef, _>("required: a root filesystem directory or an image reference")),
    };
    let from_image = matches!(image, Some(ImageRef::Image(_)));
    let declared = declared_process(&raw, r);
    let argv = command_line(&raw, from_image, r);
    let env = environment(&raw, r);
    let workdir = declared.workdir.clone().or_else(|| Some(PathBuf::from("/")));
    let user = declared.user.clone().or(Some(UserSpec::Id { uid: 0, gid: None }));
    let hostname = match (&raw.hostname, &name) {
        (Some(h), _) => r.check("hostname", hostname(h)),
        (None, Some(n)) => Some(n.as_str().replace(['_', '.'], "-")),
        (None, None) => None,
    };
    let restart = restart_policy(&raw, r);
    let depends_on = dependencies(raw.depends_on.clone(), name.as_ref(), r);
    let healthcheck = raw.healthcheck.as_ref().and_then(|h| healthcheck(h, r));
    let stop_signal = r.check("stop_signal", parse_signal(raw.stop_signal.as_deref().unwrap_or("SIGTERM")));
    let stop_timeout = r.check("stop_timeout", parse_duration(raw.stop_timeout.as_deref().unwrap_or("10s")));
    let mounts: Vec<MountSpec> = raw.mounts.iter().enumerate().filter_map(|(i, m)| mount(i, m, raw.privileged, r)).collect();
    let resources = resources(&raw.resources, r);
    let cap_add = capabilities(&raw.capabilities.add, "capabilities.add", r);
    let cap_drop = capabilities(&raw.capabilities.drop, "capabilities.drop", r);
    let sysctls = sysctls(&raw, r);
    let user_namespace = raw.user_namespace.as_ref().and_then(|u| user_namespace(u, r));
    let network = network(&raw, r);
    let ports = published_ports(&raw.ports, r);
    let privilege = super::privilege::privilege(&raw, r);
    let logs = super::log_limits::log_limits(&raw.logs, r);
    Some(ContainerSpec {
        name: name?,
        image: image?,
        argv: argv?,
        declared,
        env,
        workdir: workdir?,
        user: user?,
        hostname: hostname?,
        init: raw.init,
        restart: restart?,
        depends_on,
        healthcheck,
        stop_signal: stop_signal?,
        stop_timeout: stop_timeout?,
        read_only: raw.read_only,
        mounts,
        resources,
        cap_add,
        cap_drop,
        sysctls,
        user_namespace,
        network: network?,
        ports,
        metadata_access: raw.metadata_access,
        privilege,
        logs: logs?,
    })
}

/// Each `ports` entry parsed now, so that a bad one makes the declaration invalid (in
/// `keelctl ps`, and in keel-build) instead of failing the container's start.
fn published_ports(raw: &[String], r: &mut Report) -> Vec<PortMapping> {
    let mut ports = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        if text.trim().is_empty() {
            r.add("ports", format!("entry {index}: empty port entry"));
            continue;
        }
        if let Some(port) = r.check("ports", keel_netconf::config::parse_port(text)) {
            ports.push(port);
        }
    }
    ports
}

fn image_ref(text: &str) -> Result<ImageRef, String> {
    if crate::image::reference::is_reference(text) {
        return crate::image::reference::parse(text).map(ImageRef::Image);
    }
    absolute(text).map(ImageRef::Rootfs)
}

fn declared_process(raw: &RawContainer, r: &mut Report) -> DeclaredProcess {
    let entrypoint = raw.entrypoint.as_ref().map(words);
    if entrypoint.as_ref().is_some_and(|e| e.first().is_none_or(|p| p.is_empty())) {
        r.add("entrypoint", "must name a program");
    }
    let mut command = raw.command.as_ref().map(words);
    if !raw.args.is_empty() {
        command.get_or_insert_with(Vec::new).extend(raw.args.iter().cloned());
    }
    let workdir = raw.workdir.as_deref().and_then(|w| r.check("workdir", absolute(w)));
    let user = raw.user.as_deref().and_then(|u| r.check("user", user_spec(u)));
    DeclaredProcess { entrypoint, command, workdir, user }
}

/// An absolute, clean path (no `..`).
fn absolute(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("{text:?} must be an absolute path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{text:?} must not contain '..'"));
    }
    Ok(path.to_path_buf())
}

fn words(value: &StringOrList) -> Vec<String> {
    match value {
        StringOrList::One(text) => text.split_whitespace().map(str::to_string).collect(),
        StringOrList::Many(list) => list.clone(),
    }
}

/// entrypoint + command + args. An image may supply them at start; a root filesystem
/// directory has no config, so there the declaration must name the program.
fn command_line(raw: &RawContainer, from_image: bool, r: &mut Report) -> Option<Vec<String>> {
    let mut argv = raw.entrypoint.as_ref().map(words).unwrap_or_default();
    argv.extend(raw.command.as_ref().map(words).unwrap_or_default());
    argv.extend(raw.args.iter().cloned());
    if from_image {
        return Some(argv);
    }
    if argv.first().is_none_or(|p| p.is_empty()) {
        r.add("command", "required: the program to run (and its arguments)");
        return None;
    }
    Some(argv)
}

fn environment(raw: &RawContainer, r: &mut Report) -> Vec<(String, String)> {
    for key in raw.env.keys() {
        let valid = !key.is_empty() && !key.contains('=') && !key.contains('\0');
        if !valid {
            r.add(&format!("env.{key}"), "variable names cannot be empty or contain '='");
        }
    }
    raw.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `uid[:gid]` or a user name (also used for an image config's User).
pub(crate) fn user_spec(text: &str) -> Result<UserSpec, String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    match user.parse::<u32>() {
        Ok(uid) => {
            let gid = group.map(|g| g.parse::<u32>().map_err(|_| format!("{text:?}: gid must be a number"))).transpose()?;
            Ok(UserSpec::Id { uid, gid })
        }
        Err(_) if group.is_none() && !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) => {
            Ok(UserSpec::Name(user.to_string()))
        }
        Err(_) => Err(format!("{text:?}: expected uid[:gid] or a user name")),
    }
}

fn hostname(text: &str) -> Result<String, String> {
    let ok = !text.is_empty() && text.len() <= 63 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a valid host name"))
    }
}

fn restart_policy(raw: &RawContainer, r: &mut Report) -> Option<RestartPolicy> {
    let mode = match raw.restart.as_deref().unwrap_or("no") {
        "no" => RestartMode::No,
        "on-failure" => RestartMode::OnFailure,
        "always" => RestartMode::Always,
        other => {
            r.add("restart", format!("{other:?}: expected \"no\", \"on-failure\" or \"always\""));
            return None;
        }
    };
    if mode == RestartMode::No && raw.max_retries.is_some() {
        r.add("max_retries", "has no effect with restart = \"no\"");
    }
    Some(RestartPolicy { mode, max_retries: raw.max_retries })
}

fn dependencies(raw: Option<RawDependsOn>, own: Option<&ContainerName>, r: &mut Report) -> Vec<Dependency> {
    let pairs: Vec<(String, String)> = match raw {
        None => Vec::new(),
        Some(RawDependsOn::Names(names)) => names.into_iter().map(|n| (n, "started".into())).collect(),
        Some(RawDependsOn::Conditions(map)) => map.into_iter().collect(),
    };
    let mut out = Vec::new();
    for (name, condition) in pairs {
        let key = format!("depends_on.{name}");
        let condition = match condition.as_str() {
            "started" => DependencyCondition::Started,
            "healthy" => DependencyCondition::Healthy,
            "completed" => DependencyCondition::Completed,
            other => {
                r.add(&key, format!("{other:?}: expected started, healthy or completed"));
                continue;
            }
        };
        let Some(name) = r.check(&key, ContainerName::new(&name)) else { continue };
        if Some(&name) == own {
            r.add(&key, "a container cannot depend on itself");
            continue;
        }
        out.push(Dependency { name, condition });
    }
    out
}

fn healthcheck(raw: &RawHealthcheck, r: &mut Report) -> Option<Healthcheck> {
    let argv = words(&raw.command);
    if argv.is_empty() {
        r.add("healthcheck.command", "empty command");
    }
    let interval = r.check("healthcheck.interval", parse_duration(raw.interval.as_deref().unwrap_or("30s")));
    let timeout = r.check("healthcheck.timeout", parse_duration(raw.timeout.as_deref().unwrap_or("30s")));
    let start_period = r.check("healthcheck.start_period", parse_duration(raw.start_period.as_deref().unwrap_or("0s")));
    if interval == Some(Duration::ZERO) {
        r.add("healthcheck.interval", "must be more than 0");
    }
    Some(Healthcheck { argv, interval: interval?, timeout: timeout?, retries: raw.retries.unwrap_or(3), start_period: start_period? })
}

fn mount(index: usize, raw: &RawMount, privileged: bool, r: &mut Report) -> Option<MountSpec> {
    let key = format!("mounts[{index}]");
    let target = r.check(&format!("{key}.target"), absolute(&raw.target))?;
    match raw.kind.as_str() {
        "bind" => {
            let Some(source) = raw.source.as_deref() else {
                r.add(&format!("{key}.source"), "a bind mount needs a source under /var");
                return None;
            };
            let source = r.check(&format!("{key}.source"), absolute(source))?;
            if !privileged && !source.starts_with("/var") {
                r.add(
                    &format!("{key}.source"),
                    format!(
                        "{}: bind sources must be under /var (the only persistent, writable tree); privileged = true allows any host path",
                        source.display()
                    ),
                );
                return None;
            }
            if !privileged && source.starts_with(crate::runtime::rootfs::KEEL_STATE) {
                r.add(
                    &format!("{key}.source"),
                    format!(
                        "{}: {} is keel's own state (images, other containers' roots) and is never bound into a container; privileged = true allows it",
                        source.display(),
                        crate::runtime::rootfs::KEEL_STATE
                    ),
                );
                return None;
            }
            if raw.size.is_some() {
                r.add(&format!("{key}.size"), "size applies to tmpfs mounts only");
            }
            Some(MountSpec::Bind { source, target, read_only: raw.read_only })
        }
        "tmpfs" => {
            if raw.source.is_some() {
                r.add(&format!("{key}.source"), "a tmpfs mount has no source");
            }
            let size = raw.size.as_deref().and_then(|s| r.check(&format!("{key}.size"), parse_bytes(s)));
            Some(MountSpec::Tmpfs { target, size, read_only: raw.read_only })
        }
        other => {
            r.add(&format!("{key}.type"), format!("{other:?}: expected \"bind\" or \"tmpfs\""));
            None
        }
    }
}

fn resources(raw: &RawResources, r: &mut Report) -> Resources {
    let bytes = |r: &mut Report, key: &str, value: &Option<String>| value.as_deref().and_then(|v| r.check(key, parse_bytes(v)));
    let memory_max = bytes(r, "resources.memory_max", &raw.memory_max);
    let memory_swap_max = bytes(r, "resources.memory_swap_max", &raw.memory_swap_max);
    let cpu_max = match (&raw.cpu_max, raw.cpus) {
        (Some(_), Some(_)) => {
            r.add("resources.cpus", "set either cpus or cpu_max, not both");
            None
        }
        (Some(text), None) => r.check("resources.cpu_max", cpu_max(text)),
        (None, Some(cpus)) if cpus > 0.0 && cpus <= 1024.0 => Some((Some((cpus * 100_000.0).round() as u64), 100_000)),
        (None, Some(cpus)) => {
            r.add("resources.cpus", format!("{cpus}: expected a number of CPUs above 0"));
            None
        }
        (None, None) => None,
    };
    if raw.pids_max == Some(0) {
        r.add("resources.pids_max", "0 would forbid even the container's first process");
    }
    if let Some(weight) = raw.io_weight.filter(|w| !(1..=10000).contains(w)) {
        r.add("resources.io_weight", format!("{weight}: expected 1 to 10000"));
    }
    Resources { memory_max, memory_swap_max, cpu_max, pids_max: raw.pids_max, io_weight: raw.io_weight }
}

/// `"50000 100000"`, `"max 100000"` or `"50000"` (period 100000).
fn cpu_max(text: &str) -> Result<(Option<u64>, u64), String> {
    let mut parts = text.split_whitespace();
    let quota = match parts.next() {
        Some("max") => None,
        Some(q) => Some(q.parse::<u64>().map_err(|_| format!("{text:?}: quota must be a number or max"))?),
        None => return Err("empty cpu_max".into()),
    };
    let period = parts.next().map(|p| p.parse::<u64>()).transpose().map_err(|_| format!("{text:?}: period must be a number"))?;
    Ok((quota, period.unwrap_or(100_000)))
}

fn capabilities(names: &[String], key: &str, r: &mut Report) -> Vec<CapabilityChoice> {
    names.iter().filter_map(|n| r.check(key, CapabilityChoice::parse(n))).collect()
}

/// Sysctls a container may set: those namespaced by the kernel (ipc, uts, net).
fn sysctls(raw: &RawContainer, r: &mut Report) -> Vec<(String, String)> {
    const IPC: [&str; 6] = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax"];
    for key in raw.sysctls.keys() {
        let namespaced = key.starts_with("net.")
            || key.starts_with("fs.mqueue.")
            || IPC.contains(&key.as_str())
            || key == "kernel.shmmni"
            || key == "kernel.domainname"
            || key == "kernel.hostname";
        if !namespaced {
            r.add(&format!("sysctls.{key}"), "not a namespaced sysctl (allowed: net.*, fs.mqueue.*, kernel.msg*/sem/shm*)");
        } else if key.starts_with("net.") && raw.network.as_deref() == Some("host") {
            r.add(&format!("sysctls.{key}"), "net.* sysctls would change the host with network = \"host\"");
        }
    }
    raw.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn user_namespace(raw: &super::raw::RawUserNamespace, r: &mut Report) -> Option<UserNamespace> {
    let uid = r.check("user_namespace.uid_map", id_map(&raw.uid_map))?;
    let gid = match &raw.gid_map {
        Some(text) => r.check("user_namespace.gid_map", id_map(text))?,
        None => uid,
    };
    Some(UserNamespace { uid, gid })
}

fn id_map(text: &str) -> Result<IdMap, String> {
    let numbers: Vec<u32> = text
        .split(':')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?}: expected CONTAINER:HOST:SIZE"))?;
    match numbers[..] {
        [container, host, size] if size > 0 => Ok(IdMap { container, host, size }),
        _ => Err(format!("{text:?}: expected CONTAINER:HOST:SIZE with SIZE above 0")),
    }
}

/// The network a container joins when its declaration names none.
pub const DEFAULT_NETWORK: &str = "keel0";

fn network(raw: &RawContainer, r: &mut Report) -> Option<NetworkMode> {
    let declared = match (raw.host_network, raw.network.as_deref()) {
        (true, Some(other)) if other != "host" => {
            r.add("host_network", format!("host_network = true and network = {other:?} contradict each other"));
            return None;
        }
        (true, _) => "host",
        (false, named) => named.unwrap_or(DEFAULT_NETWORK),
    };
    let mode = match declared {
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        name if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) => {
            NetworkMode::Named(name.to_string())
        }
        other => {
            r.add("network", format!("{other:?} is not a network name"));
            return None;
        }
    };
    if !raw.ports.is_empty() && matches!(mode, NetworkMode::None | NetworkMode::Host) {
        let which = if mode == NetworkMode::None { "none" } else { "host" };
        r.add("ports", format!("ports cannot be published with network = \"{which}\""));
    }
    if raw.metadata_access && mode == NetworkMode::None {
        r.add("metadata_access", "network = \"none\" reaches no metadata service");
    }
    Some(mode)
}
