//! Declaration tests: a full valid file, and each rejection with its key and line.

use super::*;

const FULL: &str = r#"
image = "/usr/share/keel/images/busybox"
command = ["/bin/sh", "-c"]
args = ["echo hi"]
env = { GREETING = "hello", PATH = "/bin" }
workdir = "/tmp"
user = "1000:100"
hostname = "web"
init = true
restart = "on-failure"
max_retries = 5
depends_on = { db = "healthy" }
stop_signal = "SIGINT"
stop_timeout = "3s"
read_only = true
sysctls = { "net.ipv4.ip_unprivileged_port_start" = "0" }

[healthcheck]
command = "/bin/true"
interval = "2s"

[[mounts]]
type = "bind"
source = "/var/lib/web"
target = "/data"

[[mounts]]
type = "tmpfs"
target = "/scratch"
size = "16M"

[resources]
memory_max = "64M"
cpus = 0.5
pids_max = 64

[capabilities]
add = ["NET_ADMIN"]
drop = ["MKNOD"]

[user_namespace]
uid_map = "0:100000:65536"
"#;

fn errors(name: &str, text: &str) -> Vec<SpecError> {
    parse(name, text, "/etc/keel/containers/x.toml").expect_err("should be rejected").0
}

/// The single error's (key, line).
fn only(name: &str, text: &str) -> (String, Option<usize>, String) {
    let errs = errors(name, text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    (errs[0].key.clone(), errs[0].line, errs[0].message.clone())
}

#[test]
fn full_declaration_is_understood() {
    let spec = parse("web", FULL, "web.toml").unwrap();
    assert_eq!(spec.argv, ["/bin/sh", "-c", "echo hi"]);
    assert_eq!(spec.user, UserSpec::Id { uid: 1000, gid: Some(100) });
    assert_eq!(spec.restart, RestartPolicy { mode: RestartMode::OnFailure, max_retries: Some(5) });
    assert_eq!(spec.depends_on[0].condition, DependencyCondition::Healthy);
    assert_eq!(spec.stop_signal, 2);
    assert_eq!(spec.resources.cpu_max, Some((Some(50_000), 100_000)));
    assert_eq!(spec.resources.memory_max, Some(64 << 20));
    assert_eq!(spec.mounts.len(), 2);
    assert_eq!(spec.user_namespace.unwrap().gid.host, 100000);
    assert_eq!(spec.network, NetworkMode::Named("keel0".into()), "keel0 is the default network");
}

#[test]
fn minimal_declaration_gets_defaults() {
    let spec = parse("a.b_c", "image = \"/img\"\ncommand = \"/bin/app --flag\"\n", "f").unwrap();
    assert_eq!(spec.argv, ["/bin/app", "--flag"]);
    assert_eq!(spec.hostname, "a-b-c");
    assert_eq!(spec.stop_signal, 15);
    assert_eq!(spec.stop_timeout, Duration::from_secs(10));
    assert_eq!(spec.restart.mode, RestartMode::No);
}

#[test]
fn unknown_key_names_key_and_line() {
    let (key, line, message) = only("x", "image = \"/img\"\ncommand = \"/a\"\nrestrat = \"always\"\n");
    assert_eq!((key.as_str(), line), ("restrat", Some(3)));
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn wrong_type_names_the_line_and_key() {
    let (key, line, message) = only("x", "image = \"/img\"\ncommand = \"/a\"\n[resources]\npids_max = \"many\"\n");
    assert_eq!((key.as_str(), line), ("resources.pids_max", Some(4)));
    let (key, line, _) = only("x", "# a comment\nimage = 5\n");
    assert_eq!((key.as_str(), line), ("image", Some(2)));
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn ports_with_network_none_is_a_contradiction() {
    let (key, line, _) = only("x", "image = \"/img\"\ncommand = \"/a\"\nnetwork = \"none\"\nports = [\"8080:80\"]\n");
    assert_eq!((key.as_str(), line), ("ports", Some(4)));
}

#[test]
fn metadata_access_is_off_unless_declared_and_needs_a_network() {
    let plain = parse("x", "image = \"/img\"\ncommand = \"/a\"\n", "f").unwrap();
    assert!(!plain.metadata_access, "off by default");
    let on = parse("x", "image = \"/img\"\ncommand = \"/a\"\nmetadata_access = true\n", "f").unwrap();
    assert!(on.metadata_access);
    let (key, line, message) = only("x", "image = \"/img\"\ncommand = \"/a\"\nnetwork = \"none\"\nmetadata_access = true\n");
    assert_eq!((key.as_str(), line), ("metadata_access", Some(4)), "{message}");
    assert!(message.contains("network = \"none\""), "{message}");
    // A type error names the line (as every type error of the declaration does).
    let (_, line, message) = only("x", "image = \"/img\"\ncommand = \"/a\"\nmetadata_access = 1\n");
    assert_eq!(line, Some(3), "{message}");
    assert!(message.contains("expected a boolean"), "{message}");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = "image = \"Relative/Dir\"\nrestart = \"sometimes\"\n[resources]\ncpus = 1.0\ncpu_max = \"max\"\nio_weight = 0\n";
    let keys: Vec<String> = errors("x", text).into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["image", "command", "restart", "resources.cpus", "resources.io_weight"]);
}

#[test]
fn bind_source_must_be_under_var() {
    let text = "image = \"/img\"\ncommand = \"/a\"\n[[mounts]]\ntype = \"bind\"\nsource = \"/etc\"\ntarget = \"/e\"\n";
    let (key, line, message) = only("x", text);
    assert_eq!(key, "mounts[0].source");
    assert_eq!(line, Some(5));
    assert!(message.contains("under /var"), "{message}");
}

#[test]
fn bind_source_is_never_keels_own_state() {
    for source in ["/var/lib/keel", "/var/lib/keel/containers/other/upper", "/var/lib/keel/images"] {
        let text = format!("image = \"/img\"\ncommand = \"/a\"\n[[mounts]]\ntype = \"bind\"\nsource = \"{source}\"\ntarget = \"/e\"\n");
        let (key, _, message) = only("x", &text);
        assert_eq!(key, "mounts[0].source");
        assert!(message.contains("keel's own state"), "{message}");
    }
    // Control: a neighbour of keel's state is a valid source.
    let text = "image = \"/img\"\ncommand = \"/a\"\n[[mounts]]\ntype = \"bind\"\nsource = \"/var/lib/keeldata\"\ntarget = \"/e\"\n";
    assert!(crate::spec::parse("x", text, "x.toml").is_ok());
}

#[test]
fn non_namespaced_sysctl_is_refused() {
    let (key, _, _) = only("x", "image = \"/img\"\ncommand = \"/a\"\n[sysctls]\n\"kernel.panic\" = \"1\"\n");
    assert_eq!(key, "sysctls.kernel.panic");
}

#[test]
fn bad_names_and_self_dependency() {
    assert_eq!(only("Bad", "image = \"/img\"\ncommand = \"/a\"\n").0, "");
    assert_eq!(only("x", "image = \"/img\"\ncommand = \"/a\"\ndepends_on = [\"x\"]\n").0, "depends_on.x");
    assert_eq!(only("x", "image = \"/img\"\ncommand = \"/a\"\n[capabilities]\nadd = [\"FLY\"]\n").0, "capabilities.add");
}

#[test]
fn display_names_file_line_and_key() {
    let err = &errors("x", "image = \"/img\"\ncommand = \"/a\"\nrestart = \"later\"\n")[0];
    assert_eq!(err.to_string(), "/etc/keel/containers/x.toml:3: restart: \"later\": expected \"no\", \"on-failure\" or \"always\"");
}

#[test]
fn image_references_parse_and_let_the_image_supply_the_command() {
    let spec = parse("app", "image = \"oci-archive:/usr/share/keel/images/app.tar\"\n", "app.toml").unwrap();
    assert_eq!(spec.image.to_string(), "oci-archive:/usr/share/keel/images/app.tar");
    assert!(spec.argv.is_empty());
    assert_eq!(spec.declared, DeclaredProcess::default());
    let pinned = parse("app", "image = \"quay.io/org/app:1.0\"\nentrypoint = \"/bin/sh\"\nworkdir = \"/srv\"\n", "app.toml").unwrap();
    assert_eq!(pinned.image.to_string(), "quay.io/org/app:1.0");
    assert_eq!(pinned.declared.entrypoint.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(pinned.declared.workdir.as_deref(), Some(std::path::Path::new("/srv")));
    let (key, _, message) = only("x", "image = \"oci:relative/dir\"\ncommand = \"/a\"\n");
    assert_eq!(key, "image");
    assert!(message.contains("absolute"), "{message}");
}

/// Issue 12: an overflowing duration or size is an error under its own key, never a
/// panic, and it is the declaration's only error.
#[test]
fn overflowing_durations_and_sizes_name_their_key() {
    let base = "image = \"/img\"\ncommand = \"/a\"\n";
    let cases = [
        (
            "stop_timeout = \"18446744073709551615s1s\"\n",
            "stop_timeout",
            3,
            "\"18446744073709551615s1s\": duration too large (at most 8760h, one year)",
        ),
        (
            "stop_timeout = \"307445734561825861m\"\n",
            "stop_timeout",
            3,
            "\"307445734561825861m\": duration too large (at most 8760h, one year)",
        ),
        // fits a Duration, but `now + stop_timeout` would panic PID 1 at the stop
        (
            "stop_timeout = \"18446744073709551615s\"\n",
            "stop_timeout",
            3,
            "\"18446744073709551615s\": duration too large (at most 8760h, one year)",
        ),
        (
            "stop_timeout = \"99999999999999999999\"\n",
            "stop_timeout",
            3,
            "\"99999999999999999999\": duration too large (at most 8760h, one year)",
        ),
        (
            "[healthcheck]\ncommand = \"/bin/true\"\ninterval = \"18446744073709551615h\"\n",
            "healthcheck.interval",
            5,
            "\"18446744073709551615h\": duration too large (at most 8760h, one year)",
        ),
        ("[resources]\nmemory_max = \"99999999999999999999G\"\n", "resources.memory_max", 4, "\"99999999999999999999G\": size too large"),
        ("[resources]\nmemory_swap_max = \"17179869184G\"\n", "resources.memory_swap_max", 4, "\"17179869184G\": size too large"),
        ("[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/t\"\nsize = \"16777216T\"\n", "mounts[0].size", 6, "\"16777216T\": size too large"),
    ];
    for (extra, want_key, want_line, want_message) in cases {
        let (key, line, message) = only("x", &format!("{base}{extra}"));
        assert_eq!((key.as_str(), line, message.as_str()), (want_key, Some(want_line), want_message), "{extra}");
    }
}

/// Issue 12: ports are parsed with the declaration, into typed mappings; a bad entry is
/// an error under `ports` naming the entry, so the declaration is invalid before any start.
#[test]
fn ports_are_parsed_with_the_declaration() {
    let base = "image = \"/img\"\ncommand = \"/a\"\n";
    let spec = parse("x", &format!("{base}ports = [\"8080:80\", \"127.0.0.1:5353:53/udp\"]\n"), "x.toml").unwrap();
    let shown: Vec<String> = spec.ports.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["8080:80/tcp", "127.0.0.1:5353:53/udp"]);
    for (entry, want) in [
        ("70000:80", "\"70000:80\": port \"70000\" must be a number from 1 to 65535"),
        ("80:0", "\"80:0\": port \"0\" must be a number from 1 to 65535"),
        ("1:2:3:4", "\"1:2:3:4\": expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] or PORT"),
        ("web:80:80", "\"web:80:80\": \"web\" is not an IPv4 address"),
        (" ", "entry 0: empty port entry"),
    ] {
        let (key, line, message) = only("x", &format!("{base}ports = [{entry:?}]\n"));
        assert_eq!((key.as_str(), line, message.as_str()), ("ports", Some(3), want), "{entry}");
    }
    let (_, _, message) = only("x", &format!("{base}ports = [\"80/sctp\"]\n"));
    assert!(message.starts_with("\"80/sctp\": "), "{message}");
}

const BIND_ETC: &str = "[[mounts]]\ntype = \"bind\"\nsource = \"/etc\"\ntarget = \"/host/etc\"\n";

#[test]
fn privileged_is_explicit_and_brings_host_pid_network_and_any_bind() {
    let text = format!("image = \"/img\"\ncommand = \"/a\"\nprivileged = true\nhost_pid = true\nhost_network = true\n{BIND_ETC}");
    let spec = parse("admin", &text, "f").unwrap();
    assert_eq!(spec.privilege, Privilege::Privileged { host_pid: true });
    assert_eq!(spec.network, NetworkMode::Host);
    assert_eq!(spec.mounts, [MountSpec::Bind { source: "/etc".into(), target: "/host/etc".into(), read_only: false }]);
    let plain = parse("web", "image = \"/img\"\ncommand = \"/a\"\n", "f").unwrap();
    assert_eq!(plain.privilege, Privilege::Unprivileged, "unprivileged unless declared");
    let no_pid = parse("admin", "image = \"/img\"\ncommand = \"/a\"\nprivileged = true\n", "f").unwrap();
    assert_eq!(no_pid.privilege, Privilege::Privileged { host_pid: false });
    assert_eq!(no_pid.network, NetworkMode::Named("keel0".into()), "host_network is opt-in");
}

#[test]
fn a_bind_outside_var_is_refused_unprivileged_naming_privileged() {
    let (key, line, message) = only("web", &format!("image = \"/img\"\ncommand = \"/a\"\n{BIND_ETC}"));
    assert_eq!((key.as_str(), line), ("mounts[0].source", Some(5)), "{message}");
    assert!(message.contains("under /var") && message.contains("privileged = true allows"), "{message}");
    let state = "[[mounts]]\ntype = \"bind\"\nsource = \"/var/lib/keel/images\"\ntarget = \"/s\"\n";
    let (key, _, message) = only("web", &format!("image = \"/img\"\ncommand = \"/a\"\n{state}"));
    assert_eq!(key, "mounts[0].source");
    assert!(message.contains("keel's own state") && message.contains("privileged = true allows it"), "{message}");
    // Control: the same binds are accepted once the container is privileged.
    let privileged = format!("image = \"/img\"\ncommand = \"/a\"\nprivileged = true\n{BIND_ETC}{state}");
    assert_eq!(parse("admin", &privileged, "f").unwrap().mounts.len(), 2);
}

#[test]
fn host_namespaces_need_privileged() {
    let (key, line, message) = only("web", "image = \"/img\"\ncommand = \"/a\"\nhost_pid = true\n");
    assert_eq!((key.as_str(), line), ("host_pid", Some(3)));
    assert!(message.contains("privileged = true"), "{message}");
    let (key, line, message) = only("web", "image = \"/img\"\ncommand = \"/a\"\nhost_network = true\n");
    assert_eq!((key.as_str(), line), ("host_network", Some(3)));
    assert!(message.contains("privileged = true") && message.contains("network = \"host\""), "{message}");
    let (key, line, message) =
        only("web", "image = \"/img\"\ncommand = \"/a\"\nprivileged = true\nhost_network = true\nnetwork = \"keel0\"\n");
    assert_eq!((key.as_str(), line), ("host_network", Some(4)));
    assert!(message.contains("contradict"), "{message}");
}

#[test]
fn privileged_refuses_settings_it_would_ignore() {
    let (key, line, message) = only("a", "image = \"/img\"\ncommand = \"/a\"\nprivileged = true\n[capabilities]\ndrop = [\"ALL\"]\n");
    assert_eq!((key.as_str(), line), ("capabilities", Some(4)));
    assert!(message.contains("every capability"), "{message}");
    let (key, line, message) =
        only("a", "image = \"/img\"\ncommand = \"/a\"\nprivileged = true\n[user_namespace]\nuid_map = \"0:100000:65536\"\n");
    assert_eq!((key.as_str(), line), ("user_namespace", Some(4)));
    assert!(message.contains("host's root"), "{message}");
}

/// Issue 12: `[logs]` sets a container's log rotation; sizes cannot overflow and each
/// value out of its range is an error under its own key, at parse time.
#[test]
fn log_limits_are_parsed_and_checked_with_the_declaration() {
    let base = "image = \"/img\"\ncommand = \"/a\"\n";
    let spec = parse("x", base, "x.toml").unwrap();
    assert_eq!(spec.logs, crate::logs::LogLimits::default());
    let spec = parse("x", &format!("{base}[logs]\nmax_size = \"64MiB\"\nmax_files = 5\n"), "x.toml").unwrap();
    assert_eq!((spec.logs.max_bytes(), spec.logs.files(), spec.logs.keep()), (64 << 20, 5, 4));
    let cases = [
        ("[logs]\nmax_size = \"99999999999999999999G\"\n", "logs.max_size", 4, "\"99999999999999999999G\": size too large"),
        ("[logs]\nmax_size = \"lots\"\n", "logs.max_size", 4, "\"lots\": expected a size such as 512M or 1G"),
        ("[logs]\nmax_size = \"1K\"\n", "logs.max_size", 4, "1024 bytes is too small for a log file (at least 64 KiB)"),
        ("[logs]\nmax_size = \"2G\"\n", "logs.max_size", 4, "2147483648 bytes is too large for a log file (at most 1 GiB)"),
        ("[logs]\nmax_files = 0\n", "logs.max_files", 4, "0: the number of log files must be from 1 to 32"),
        ("[logs]\nmax_files = -3\n", "logs.max_files", 4, "-3: the number of log files must be from 1 to 32"),
        ("[logs]\nmax_files = 4294967297\n", "logs.max_files", 4, "4294967297: the number of log files must be from 1 to 32"),
    ];
    for (extra, want_key, want_line, want_message) in cases {
        let (key, line, message) = only("x", &format!("{base}{extra}"));
        assert_eq!((key.as_str(), line, message.as_str()), (want_key, Some(want_line), want_message), "{extra}");
    }
    // Both bad: both named.
    let errors = parse("x", &format!("{base}[logs]\nmax_size = \"1\"\nmax_files = 99\n"), "x.toml").unwrap_err();
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["logs.max_size", "logs.max_files"]);
    let (key, _, message) = only("x", &format!("{base}[logs]\nmax_lines = 5\n"));
    assert_eq!(key, "max_lines", "{message}");
}
