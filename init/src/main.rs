//! The `keel` binary: PID 1 when the kernel starts it, `keelctl` by argv[0] or `keel ctl`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    if invoked_as == "keelctl" {
        std::process::exit(keel_init::ctl::main(args));
    }
    // `keel init` is usually PID 1 of a container's pid namespace: dispatch it before
    // the PID 1 check below, which would boot the host.
    if args.get(1).map(String::as_str) == Some("init") {
        std::process::exit(keel_init::init_cmd::main(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some("api") {
        std::process::exit(keel_init::api::main(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some("syslog") {
        std::process::exit(keel_init::syslog::main(&args[2..]));
    }
    if std::process::id() == 1 {
        keel_init::boot::pid1_main();
    }
    match args.get(1).map(String::as_str) {
        Some("ctl") => std::process::exit(keel_init::ctl::main(args[1..].to_vec())),
        Some("run") => std::process::exit(keel_init::run_cmd::main(&args[2..])),
        Some("image") => std::process::exit(keel_init::images::unpack_main(&args[2..])),
        Some("--version") => println!("keel {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "keel {}: the keel host's PID 1.\n\nusage:\n  keel ctl [--socket PATH] status|poweroff|reboot|exec -- CMD...\n  keel run FILE.toml   run one container in the foreground\n  keel image unpack REF DIR   write an image's root filesystem into DIR\n  keel init [--] CMD [ARGS...]   a tiny init for containers: forward signals, reap orphans\n  (as PID 1, started by the kernel, it boots the host)",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
