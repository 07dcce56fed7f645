use super::*;
use keel_netconf::config::parse;

const BASE: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.90.0.0/24\"\n";

fn config(text: &str) -> NetworkConfig {
    parse(text, "network.toml").unwrap_or_else(|e| panic!("{text}\n=> {e}"))
}

fn attached(pairs: &[(&str, &[&str])]) -> AttachedByNetwork {
    pairs.iter().map(|(n, c)| (n.to_string(), c.iter().map(|s| s.to_string()).collect())).collect()
}

#[test]
fn identical_declarations_change_nothing() {
    let plan = plan(&config(BASE), &attached(&[("keel0", &["web"])]), &config(BASE), false).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.unchanged, ["keel0", "net2"]);
    assert_eq!(NetworkReloadReport::of(&plan).lines(), ["no network changes", "unchanged: keel0, net2"]);
}

#[test]
fn a_new_network_is_added_without_touching_the_others() {
    let new = format!("{BASE}\n[[network]]\nname = \"net3\"\nsubnet = \"10.91.0.0/24\"\n");
    let plan = plan(&config(BASE), &attached(&[("keel0", &["web"]), ("net2", &["db"])]), &config(&new), false).unwrap();
    assert_eq!(plan.add.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["net3"]);
    assert!(plan.remove.is_empty() && plan.change.is_empty() && plan.restart.is_empty() && plan.firewall.is_empty(), "{plan:?}");
    assert_eq!(plan.unchanged, ["keel0", "net2"]);
    assert_eq!(plan.disturbed().count(), 0);
    assert_eq!(NetworkReloadReport::of(&plan).added, ["net3 (bridge net3, subnet 10.91.0.0/24)"]);
}

#[test]
fn removing_an_unused_network_is_planned() {
    let plan = plan(
        &config(BASE),
        &attached(&[("keel0", &["web"]), ("net2", &[])]),
        &config("[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n"),
        false,
    )
    .unwrap();
    assert_eq!(plan.remove.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["net2"]);
    assert_eq!(plan.disturbed().collect::<Vec<_>>(), ["net2"]);
}

#[test]
fn removing_a_network_in_use_is_refused_naming_its_containers() {
    let new = config("[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n");
    let err = plan(&config(BASE), &attached(&[("keel0", &["web"]), ("net2", &["db", "cache"])]), &new, false).unwrap_err();
    assert_eq!(
        err,
        PlanError::InUse(vec![InUse { network: "net2".into(), what: "removed".into(), containers: vec!["db".into(), "cache".into()] }])
    );
    let text = err.to_string();
    assert!(text.contains("network net2 (removed) is used by container(s) db, cache") && text.contains("--restart-attached"), "{text}");
    // Negative control: the same change with nothing attached goes through.
    assert!(plan(&config(BASE), &attached(&[("keel0", &["web"])]), &new, false).is_ok());
}

#[test]
fn changing_a_subnet_in_use_is_refused_unless_restart_attached() {
    let new = config(&BASE.replace("10.90.0.0/24", "10.92.0.0/24"));
    let used = attached(&[("keel0", &["web"]), ("net2", &["db"])]);
    let err = plan(&config(BASE), &used, &new, false).unwrap_err();
    let PlanError::InUse(list) = &err else { panic!("{err:?}") };
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].network.as_str(), list[0].containers.as_slice()), ("net2", &["db".to_string()][..]));
    assert!(list[0].what.contains("subnet 10.90.0.0/24 -> 10.92.0.0/24"), "{}", list[0].what);
    assert!(list[0].what.contains("gateway 10.90.0.1 -> 10.92.0.1"), "{}", list[0].what);
    let plan = plan(&config(BASE), &used, &new, true).unwrap();
    assert_eq!(plan.restart, ["db"], "only net2's container restarts, not web on keel0");
    assert_eq!(plan.change.len(), 1);
    assert!(plan.change[0].rebuild);
    assert_eq!(plan.unchanged, ["keel0"]);
    assert_eq!(NetworkReloadReport::of(&plan).restarted, ["db"]);
}

#[test]
fn bridge_and_subnet6_changes_rebuild() {
    for (from, to) in [
        ("name = \"net2\"\n", "name = \"net2\"\nbridge = \"kbr2\"\n"),
        ("name = \"net2\"\n", "name = \"net2\"\nsubnet6 = \"fd00:90::/64\"\n"),
    ] {
        let new = config(&BASE.replace(from, to));
        let plan = plan(&config(BASE), &AttachedByNetwork::new(), &new, false).unwrap();
        assert!(plan.change[0].rebuild, "{to}: {plan:?}");
        assert!(plan.firewall.is_empty(), "{to}: {plan:?}");
    }
}

#[test]
fn isolation_and_metadata_are_firewall_changes_that_keep_containers() {
    let new = config(&BASE.replace("subnet = \"10.90.0.0/24\"\n", "subnet = \"10.90.0.0/24\"\nisolated = true\nmetadata = true\n"));
    let plan = plan(&config(BASE), &attached(&[("net2", &["db"])]), &new, false).unwrap();
    assert_eq!(plan.change.len(), 1);
    assert!(!plan.change[0].rebuild, "{plan:?}");
    assert!(plan.restart.is_empty());
    assert_eq!(plan.firewall, ["network net2: isolated false -> true", "network net2: metadata false -> true"]);
    assert_eq!(plan.disturbed().count(), 0, "the bridge stays");
}

#[test]
fn firewall_section_changes_are_listed() {
    let current = config(&format!("{BASE}\n[firewall]\nallow = [\"tcp/22\", \"udp/53\"]\n"));
    let new = config(&format!("{BASE}\n[firewall]\ninput = \"accept\"\nallow = [\"tcp/22\", \"tcp/443\"]\n"));
    let plan = plan(&current, &attached(&[("keel0", &["web"])]), &new, false).unwrap();
    assert_eq!(plan.firewall, ["input: drop -> accept", "allow: +tcp/443", "allow: -udp/53"]);
    assert!(plan.add.is_empty() && plan.remove.is_empty() && plan.change.is_empty());
    assert!(plan.touches_firewall() && !plan.is_empty());
}

#[test]
fn uplink_changes_are_refused() {
    let static_uplink = "[[uplink]]\ninterface = \"eth0\"\naddress = \"192.168.1.10/24\"\n\n";
    let err = plan(&config(BASE), &AttachedByNetwork::new(), &config(&format!("{static_uplink}{BASE}")), false).unwrap_err();
    assert!(matches!(err, PlanError::Uplink(_)), "{err:?}");
    assert!(err.to_string().starts_with("uplink changes need a reboot (uplink[0] differs"), "{err}");
    // Negative control: the same uplink on both sides is no change.
    let same = config(&format!("{static_uplink}{BASE}"));
    assert!(plan(&same, &AttachedByNetwork::new(), &same, false).is_ok());
}

#[test]
fn a_renamed_network_is_a_removal_and_an_addition() {
    let new = config(&BASE.replace("name = \"net2\"", "name = \"net4\"\nbridge = \"net2\""));
    let err = plan(&config(BASE), &attached(&[("net2", &["db"])]), &new, false).unwrap_err();
    assert!(err.to_string().contains("network net2 (removed) is used by container(s) db"), "{err}");
    let plan = plan(&config(BASE), &attached(&[("net2", &["db"])]), &new, true).unwrap();
    assert_eq!((plan.remove[0].name.as_str(), plan.add[0].name.as_str()), ("net2", "net4"));
    assert_eq!(plan.restart, ["db"]);
}

#[test]
fn report_lines_say_what_changed() {
    let new = config(&format!(
        "{}\n[[network]]\nname = \"net3\"\nsubnet = \"10.91.0.0/24\"\n[firewall]\nallow = [\"tcp/22\"]\n",
        BASE.replace("10.90.0.0/24", "10.92.0.0/24")
    ));
    let plan = plan(&config(BASE), &attached(&[("net2", &["db"])]), &new, true).unwrap();
    let mut report = NetworkReloadReport::of(&plan);
    report.warnings.push("container db: did not start again: boom".into());
    assert_eq!(
        report.lines(),
        [
            "added network net3 (bridge net3, subnet 10.91.0.0/24)",
            "changed network net2: subnet 10.90.0.0/24 -> 10.92.0.0/24, gateway 10.90.0.1 -> 10.92.0.1",
            "firewall: allow: +tcp/22",
            "restarted container db",
            "warning: container db: did not start again: boom",
            "unchanged: keel0",
        ]
    );
}
