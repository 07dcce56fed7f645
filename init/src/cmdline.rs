//! The `keel.*` options of the kernel command line.
//!
//! Unknown `keel.*` options and bad values are reported (not ignored, not fatal): a
//! typo on the command line should be visible on the console, and the boot goes on
//! with the defaults.

use crate::kmod::ModuleName;
use keel_supervisor::manager::{LaunchFault, LaunchStep};
use keel_supervisor::spec::ContainerName;

/// The options keel understands, with their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// `keel.debug`: log debug lines too.
    pub debug: bool,
    /// `keel.modules=a,b`: modules to load in addition to the image's list.
    pub extra_modules: Vec<ModuleName>,
    /// `keel.shutdown_grace=SECS`: overrides the image's grace period at shutdown.
    pub shutdown_grace_secs: Option<u64>,
    /// `keel.test.panic=STEP`: test-only, panic inside the named boot step.
    pub panic_in_step: Option<String>,
    /// `keel.test.fail_launch=NAME:STEP[:leak][,…]`: test-only, every start of
    /// container NAME fails right after STEP (see `LaunchStep`), to prove a failed start
    /// gives back everything it took (`:leak`: gives back nothing, the tests' negative control).
    pub fail_launch: Vec<(ContainerName, LaunchFault)>,
    /// `keel.test.unbounded`: test-only, the negative control of the bounded-I/O tests:
    /// no console echo budget, no cap on control connections and no idle timeout.
    pub unbounded: bool,
    /// `keel.firstboot`: run the first-boot config even though /var has its marker.
    pub force_firstboot: bool,
    /// `keel.config.url=URL`: where the first-boot config is (`data:` or `http://`).
    pub config_url: Option<String>,
    /// `keel.config.timeout=SECS`: how long first boot retries an http source while the
    /// network comes up (default [`DEFAULT_CONFIG_TIMEOUT_SECS`]).
    pub config_timeout_secs: Option<u64>,
    /// `keel.platform=aws|gcp|openstack`: read the first-boot config from that cloud's
    /// metadata service (user data) when fw_cfg and `keel.config.url` give none.
    pub platform: Option<Platform>,
    /// `keel.metadata.url=http://IP:PORT`: a test and operations knob replacing the
    /// metadata service's base address (`http://169.254.169.254`, or
    /// `http://metadata.google.internal` on GCP).
    pub metadata_url: Option<String>,
    /// `keel.root=NAME`: the GPT partition name of the read-only root (disk images);
    /// the initramfs stage switches to it (`sysroot`), the rest of the boot only notes it.
    pub root: Option<String>,
    /// `keel.test.worker_memory=SIZE`: test-only, the memory.max of every worker
    /// (pull, load, import…) instead of its kind's default, to provoke an OOM kill.
    pub worker_memory_max: Option<u64>,
    /// `keel.watchdog=SECS`: overrides keel.toml's `watchdog_secs` (0: leave it off).
    pub watchdog_secs: Option<u32>,
    /// `keel.test.wedge=SECS`: test-only, block the event loop for SECS once it starts
    /// (after ready), as a wedged PID 1 would, so the watchdog's reset can be tested.
    pub wedge_secs: Option<u64>,
}

/// The default of `keel.config.timeout`.
pub const DEFAULT_CONFIG_TIMEOUT_SECS: u64 = 60;

/// A cloud whose metadata service can hold the first-boot config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Amazon EC2 (IMDSv2).
    Aws,
    /// Google Compute Engine.
    Gcp,
    /// OpenStack (the metadata service, not the config drive).
    Openstack,
}

impl BootOptions {
    /// Whether the first-boot config may need the network: an http URL or a platform.
    pub fn firstboot_needs_network(&self) -> bool {
        self.platform.is_some() || self.config_url.as_deref().is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
    }
}

/// A `keel.*` option that could not be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// The name is not one keel knows.
    #[error("unknown kernel command line option {name} (known: {known})")]
    Unknown {
        /// The option as written.
        name: String,
        /// The options keel knows.
        known: &'static str,
    },
    /// The value is not valid for the option.
    #[error("kernel command line option {name}={value}: {reason}")]
    BadValue {
        /// The option name.
        name: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

const KNOWN: &str = "keel.debug, keel.modules, keel.shutdown_grace, keel.firstboot, keel.config.url, keel.config.timeout, keel.platform, keel.metadata.url, keel.root, keel.watchdog, keel.test.panic, keel.test.fail_launch, keel.test.unbounded, keel.test.worker_memory, keel.test.wedge";

/// Split a command line into words; double quotes group words as the kernel does.
pub fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for ch in cmdline.chars() {
        match ch {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Read the `keel.*` options out of a command line; other words are the kernel's.
pub fn parse(cmdline: &str) -> (BootOptions, Vec<OptionError>) {
    let mut options = BootOptions::default();
    let mut problems = Vec::new();
    for word in split_words(cmdline) {
        if !word.starts_with("keel.") {
            continue;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (word.clone(), None),
        };
        if let Err(problem) = apply(&mut options, &name, value) {
            problems.push(problem);
        }
    }
    (options, problems)
}

fn apply(options: &mut BootOptions, name: &str, value: Option<String>) -> Result<(), OptionError> {
    let bad = |value: &str, reason| OptionError::BadValue { name: name.into(), value: value.into(), reason };
    match (name, value) {
        ("keel.debug", None) => options.debug = true,
        ("keel.debug", Some(v)) => options.debug = parse_bool(&v).ok_or_else(|| bad(&v, "expected 0, 1, yes, no, true or false"))?,
        ("keel.modules", Some(v)) => {
            let names: Vec<ModuleName> = v.split(',').filter(|s| !s.is_empty()).map(ModuleName::new).collect();
            if names.iter().any(|n| !is_module_name(n.as_str())) {
                return Err(bad(&v, "module names are letters, digits, '_' and '-', separated by ','"));
            }
            options.extra_modules.extend(names);
        }
        ("keel.shutdown_grace", Some(v)) => {
            let secs = v.parse::<u64>().ok().filter(|s| *s <= 3600);
            options.shutdown_grace_secs = Some(secs.ok_or_else(|| bad(&v, "expected whole seconds, 0 to 3600"))?);
        }
        ("keel.test.panic", Some(v)) if !v.is_empty() => options.panic_in_step = Some(v),
        ("keel.test.fail_launch", Some(v)) if !v.is_empty() => {
            options.fail_launch = parse_fail_launch(&v)
                .ok_or_else(|| bad(&v, "expected NAME:STEP[:leak][,…], STEP one of image, network, cgroup, pipes, hooks, started"))?
        }
        ("keel.test.unbounded", None) => options.unbounded = true,
        ("keel.test.wedge", Some(v)) => {
            let secs = v.parse::<u64>().ok().filter(|s| (1..=3600).contains(s));
            options.wedge_secs = Some(secs.ok_or_else(|| bad(&v, "expected whole seconds, 1 to 3600"))?);
        }
        ("keel.watchdog", Some(v)) => {
            let secs = v.parse::<u32>().ok().filter(|s| *s <= 3600);
            options.watchdog_secs = Some(secs.ok_or_else(|| bad(&v, "expected whole seconds, 0 (off) to 3600"))?);
        }
        ("keel.firstboot", None) => options.force_firstboot = true,
        ("keel.firstboot", Some(v)) => {
            options.force_firstboot = parse_bool(&v).ok_or_else(|| bad(&v, "expected 0, 1, yes, no, true or false"))?
        }
        ("keel.config.url", Some(v)) if !v.is_empty() => options.config_url = Some(v),
        ("keel.config.timeout", Some(v)) => {
            let secs = v.parse::<u64>().ok().filter(|s| (1..=3600).contains(s));
            options.config_timeout_secs = Some(secs.ok_or_else(|| bad(&v, "expected whole seconds, 1 to 3600"))?);
        }
        ("keel.platform", Some(v)) => {
            options.platform = Some(match v.as_str() {
                "aws" => Platform::Aws,
                "gcp" => Platform::Gcp,
                "openstack" => Platform::Openstack,
                _ => return Err(bad(&v, "expected aws, gcp or openstack")),
            })
        }
        ("keel.metadata.url", Some(v)) if v.starts_with("http://") => options.metadata_url = Some(v.trim_end_matches('/').to_string()),
        ("keel.metadata.url", Some(v)) => return Err(bad(&v, "expected http://IP:PORT")),
        ("keel.root", Some(v)) if !v.is_empty() => options.root = Some(v),
        ("keel.test.worker_memory", Some(v)) => {
            let bytes = keel_supervisor::spec::units::parse_bytes(&v).ok().filter(|b| *b >= 1 << 20);
            options.worker_memory_max = Some(bytes.ok_or_else(|| bad(&v, "expected a size of at least 1M, e.g. 16M"))?);
        }
        (
            "keel.modules"
            | "keel.shutdown_grace"
            | "keel.test.panic"
            | "keel.test.fail_launch"
            | "keel.test.wedge"
            | "keel.watchdog"
            | "keel.config.url"
            | "keel.config.timeout"
            | "keel.platform"
            | "keel.root"
            | "keel.test.worker_memory",
            _,
        ) => return Err(bad("", "needs a value")),
        _ => return Err(OptionError::Unknown { name: name.into(), known: KNOWN }),
    }
    Ok(())
}

/// `NAME:STEP[:leak][,…]` of `keel.test.fail_launch`; None when any item is bad.
fn parse_fail_launch(value: &str) -> Option<Vec<(ContainerName, LaunchFault)>> {
    value
        .split(',')
        .map(|item| {
            let mut parts = item.split(':');
            let name = ContainerName::new(parts.next()?).ok()?;
            let after = LaunchStep::from_name(parts.next()?)?;
            let leak = match parts.next() {
                None => false,
                Some("leak") => true,
                Some(_) => return None,
            };
            parts.next().is_none().then_some((name, LaunchFault { after, leak }))
        })
        .collect()
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn is_module_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_launch_names_containers_and_steps() {
        let (options, problems) = parse("keel.test.fail_launch=a:network,b-2:started:leak");
        assert!(problems.is_empty(), "{problems:?}");
        let got: Vec<(String, LaunchStep, bool)> = options.fail_launch.iter().map(|(n, f)| (n.to_string(), f.after, f.leak)).collect();
        assert_eq!(got, [("a".to_string(), LaunchStep::Network, false), ("b-2".to_string(), LaunchStep::Started, true)]);
        for bad in [
            "keel.test.fail_launch=a:nope",
            "keel.test.fail_launch=a",
            "keel.test.fail_launch=../x:image",
            "keel.test.fail_launch=a:image:keep",
            "keel.test.fail_launch=a:image:leak:x",
            "keel.test.fail_launch",
        ] {
            let (options, problems) = parse(bad);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(options.fail_launch.is_empty(), "{bad}");
        }
    }

    #[test]
    fn reads_keel_options_and_ignores_the_kernels() {
        let (options, problems) = parse("console=ttyS0 quiet keel.debug keel.modules=virtio-net,bridge keel.shutdown_grace=3");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(options.debug);
        assert!(!options.unbounded);
        assert!(parse("keel.test.unbounded").0.unbounded);
        assert_eq!(options.extra_modules, vec![ModuleName::new("virtio_net"), ModuleName::new("bridge")]);
        assert_eq!(options.shutdown_grace_secs, Some(3));
    }

    #[test]
    fn unknown_option_is_named() {
        let (_, problems) = parse("keel.bogus=1 keel.debug");
        assert_eq!(problems.len(), 1);
        assert!(matches!(&problems[0], OptionError::Unknown { name, .. } if name == "keel.bogus"));
        assert!(problems[0].to_string().contains("unknown kernel command line option keel.bogus"));
    }

    #[test]
    fn bad_values_are_named_and_defaults_kept() {
        let (options, problems) = parse("keel.shutdown_grace=soon keel.modules=a/b keel.test.panic");
        assert_eq!(options, BootOptions::default());
        let names: Vec<String> = problems
            .iter()
            .map(|p| match p {
                OptionError::BadValue { name, .. } => name.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, ["keel.shutdown_grace", "keel.modules", "keel.test.panic"]);
    }

    #[test]
    fn firstboot_sources_are_read() {
        let (options, problems) = parse(
            "keel.config.url=http://10.0.2.2:8000/c.ign keel.config.timeout=30 keel.platform=aws keel.metadata.url=http://10.0.2.2:9000/",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(options.config_timeout_secs, Some(30));
        assert_eq!(options.platform, Some(Platform::Aws));
        assert_eq!(options.metadata_url.as_deref(), Some("http://10.0.2.2:9000"));
        assert!(options.firstboot_needs_network());
        let (options, problems) = parse("keel.config.url=data:,x keel.config.timeout=0 keel.platform=azure keel.metadata.url=ftp://x");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(!options.firstboot_needs_network());
    }

    #[test]
    fn watchdog_and_wedge_are_read_and_checked() {
        let (options, problems) = parse("keel.watchdog=5 keel.test.wedge=60");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((options.watchdog_secs, options.wedge_secs), (Some(5), Some(60)));
        assert_eq!(parse("keel.watchdog=0").0.watchdog_secs, Some(0));
        let (options, problems) = parse("keel.watchdog=3601 keel.test.wedge=0 keel.test.wedge");
        assert_eq!((options.watchdog_secs, options.wedge_secs), (None, None));
        let names: Vec<&str> = problems
            .iter()
            .map(|p| match p {
                OptionError::BadValue { name, .. } => name.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, ["keel.watchdog", "keel.test.wedge", "keel.test.wedge"]);
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(split_words(r#"a "b c" d"#), ["a", "b c", "d"]);
    }
}
