//! The planner on parsed declarations: what counts as a change, who follows a restart.

use super::*;
use proptest::prelude::*;

fn name(n: &str) -> ContainerName {
    ContainerName::new(n).unwrap()
}

fn spec(n: &str, text: &str) -> ContainerSpec {
    crate::spec::parse(n, text, &format!("{n}.toml")).unwrap()
}

const DB: &str = "image = \"/img\"\ncommand = [\"/db\"]\n";
const WEB: &str = "image = \"/img\"\ncommand = [\"/web\"]\ndepends_on = [\"db\"]\n";
const JOB: &str = "image = \"/img\"\ncommand = [\"/job\"]\ndepends_on = { db = \"completed\" }\n";
const LONE: &str = "image = \"/img\"\ncommand = [\"/lone\"]\n";

fn current(decls: &[(&str, &str)]) -> BTreeMap<ContainerName, Current> {
    decls.iter().map(|(n, t)| (name(n), Current { spec: Some(spec(n, t)), digest: None })).collect()
}

fn wanted(decls: &[(&str, &str)]) -> BTreeMap<ContainerName, Wanted> {
    decls.iter().map(|(n, t)| (name(n), Wanted { spec: spec(n, t), digest: None })).collect()
}

fn actions(plan: &Plan) -> Vec<(&str, Action)> {
    plan.steps.iter().map(|s| (s.name.as_str(), s.action)).collect()
}

#[test]
fn the_same_set_is_a_noop() {
    let plan = plan(&current(&[("db", DB), ("web", WEB)]), &wanted(&[("db", DB), ("web", WEB)]), &BTreeMap::new());
    assert!(plan.is_noop(), "{plan:?}");
    assert_eq!(actions(&plan), [("db", Action::Unchanged), ("web", Action::Unchanged)]);
}

#[test]
fn comments_order_and_spacing_are_not_changes() {
    let edited = "# the database\ncommand   =   [ \"/db\" ]   # its program\n\nimage = \"/img\"\n";
    let plan = plan(&current(&[("db", DB)]), &wanted(&[("db", edited)]), &BTreeMap::new());
    assert!(plan.is_noop(), "{plan:?}");
    // Negative control: a real edit of the same file is seen.
    let changed = edited.replace("/db", "/db2");
    let plan = super::plan(&current(&[("db", DB)]), &wanted(&[("db", &changed)]), &BTreeMap::new());
    assert_eq!(plan.steps[0], Step { name: "db".into(), action: Action::Change, keys: vec!["command".into()] });
}

#[test]
fn a_default_written_out_is_not_a_change() {
    let explicit = format!("{DB}stop_timeout = \"10s\"\nstop_signal = \"SIGTERM\"\n");
    assert!(plan(&current(&[("db", DB)]), &wanted(&[("db", &explicit)]), &BTreeMap::new()).is_noop());
}

#[test]
fn a_change_restarts_its_started_dependents_only() {
    let old = current(&[("db", DB), ("web", WEB), ("job", JOB), ("lone", LONE)]);
    let db2 = format!("{DB}env = {{ MODE = \"fast\" }}\n");
    let new = wanted(&[("db", &db2), ("web", WEB), ("job", JOB), ("lone", LONE)]);
    let plan = plan(&old, &new, &BTreeMap::new());
    assert_eq!(
        actions(&plan),
        [("db", Action::Change), ("lone", Action::Unchanged), ("job", Action::Unchanged), ("web", Action::RestartDependent)]
    );
    assert_eq!(plan.steps[0].keys, ["env"]);
    assert_eq!(plan.steps[3].keys, ["db"]);
    assert_eq!(plan.to_text(), "change db: env\nunchanged lone\nunchanged job\nrestart-dependent web (after db)\n");
}

#[test]
fn restarts_spread_transitively_through_healthy_and_started() {
    let api = "image = \"/img\"\ncommand = [\"/api\"]\ndepends_on = { db = \"healthy\" }\n[healthcheck]\ncommand = [\"true\"]\n";
    let db = format!("{DB}[healthcheck]\ncommand = [\"true\"]\n");
    let front = "image = \"/img\"\ncommand = [\"/f\"]\ndepends_on = [\"api\"]\n";
    let old = current(&[("db", &db), ("api", api), ("front", front)]);
    let db2 = db.replace("/db", "/db2");
    let plan = plan(&old, &wanted(&[("db", &db2), ("api", api), ("front", front)]), &BTreeMap::new());
    assert_eq!(actions(&plan), [("db", Action::Change), ("api", Action::RestartDependent), ("front", Action::RestartDependent)]);
    assert_eq!(plan.steps[2].keys, ["api"]);
}

#[test]
fn adds_and_removes_in_dependency_order() {
    let old = current(&[("db", DB), ("web", WEB), ("lone", LONE)]);
    let plan = plan(&old, &wanted(&[("lone", LONE)]), &BTreeMap::new());
    assert_eq!(actions(&plan), [("web", Action::Remove), ("db", Action::Remove), ("lone", Action::Unchanged)]);
    let plan = super::plan(&current(&[("lone", LONE)]), &wanted(&[("db", DB), ("web", WEB), ("lone", LONE)]), &BTreeMap::new());
    assert_eq!(actions(&plan), [("db", Action::Add), ("lone", Action::Unchanged), ("web", Action::Add)]);
}

#[test]
fn a_new_image_digest_is_a_change_and_an_unknown_one_is_not() {
    let mut old = current(&[("db", DB)]);
    let mut new = wanted(&[("db", DB)]);
    old.get_mut(&name("db")).unwrap().digest = Some("sha256:aa".into());
    new.get_mut(&name("db")).unwrap().digest = Some("sha256:bb".into());
    assert_eq!(plan(&old, &new, &BTreeMap::new()).steps[0].keys, [DIGEST_KEY]);
    new.get_mut(&name("db")).unwrap().digest = None;
    assert!(plan(&old, &new, &BTreeMap::new()).is_noop());
    new.get_mut(&name("db")).unwrap().digest = Some("sha256:aa".into());
    assert!(plan(&old, &new, &BTreeMap::new()).is_noop());
}

#[test]
fn an_invalid_declaration_made_valid_is_a_change_and_forced_restarts_are_changes() {
    let mut old = current(&[("db", DB), ("web", WEB)]);
    old.get_mut(&name("web")).unwrap().spec = None;
    let plan = plan(&old, &wanted(&[("db", DB), ("web", WEB)]), &BTreeMap::new());
    assert_eq!(actions(&plan), [("db", Action::Unchanged), ("web", Action::Change)]);
    let forced: BTreeMap<ContainerName, String> = [(name("db"), "network".to_string())].into();
    let plan = super::plan(&current(&[("db", DB), ("web", WEB)]), &wanted(&[("db", DB), ("web", WEB)]), &forced);
    assert_eq!(actions(&plan), [("db", Action::Change), ("web", Action::RestartDependent)]);
    assert_eq!(plan.steps[0].keys, ["network"]);
}

#[test]
fn every_key_is_named() {
    let base = spec("db", DB);
    let cases = [
        ("image = \"/other\"\ncommand = [\"/db\"]\n", "image"),
        ("image = \"/img\"\ncommand = [\"/db\"]\nuser = \"5\"\n", "user"),
        ("image = \"/img\"\ncommand = [\"/db\"]\nports = [\"8080:80\"]\nnetwork = \"default\"\n", "ports"),
        ("image = \"/img\"\ncommand = [\"/db\"]\n[resources]\npids_max = 5\n", "resources"),
        ("image = \"/img\"\ncommand = [\"/db\"]\nrestart = \"always\"\n", "restart"),
    ];
    for (text, key) in cases {
        let keys = changed_keys(&base, &spec("db", text));
        assert!(keys.contains(&key.to_string()), "{text}: {keys:?}");
    }
}

/// One generated container: command variant, [(dependency index, condition)], digest.
type Generated = (u8, Vec<(u8, u8)>, u8);

fn arbitrary_set() -> impl Strategy<Value = Vec<Generated>> {
    // (command variant, [(dependency index, condition)], digest) for containers c0..c5.
    proptest::collection::vec((0u8..3, proptest::collection::vec((0u8..6, 0u8..3), 0..3), 0u8..2), 1..6)
}

fn build(set: &[Generated]) -> BTreeMap<ContainerName, Wanted> {
    set.iter()
        .enumerate()
        .map(|(i, (command, deps, digest))| {
            let mut text = format!("image = \"/img\"\ncommand = [\"/c{command}\"]\n[depends_on]\n");
            let mut seen = BTreeSet::new();
            for (dep, condition) in deps {
                // Only earlier containers: no cycles, as validation guarantees.
                let dep = usize::from(*dep) % (i.max(1));
                if dep < i && seen.insert(dep) {
                    let condition = ["started", "completed", "started"][usize::from(*condition)];
                    text.push_str(&format!("c{dep} = \"{condition}\"\n"));
                }
            }
            let n = format!("c{i}");
            (name(&n), Wanted { spec: spec(&n, &text), digest: Some(format!("sha256:{digest}")) })
        })
        .collect()
}

proptest! {
    /// For any two sets: every wanted container has one step; a container whose
    /// declaration and digest are unchanged and that follows no restarting container
    /// is untouched; removed ones are exactly those not wanted; planning a set against
    /// itself is a no-op.
    #[test]
    fn plans_are_complete_and_touch_only_what_changed(old in arbitrary_set(), new in arbitrary_set()) {
        let (old, new) = (build(&old), build(&new));
        let current: BTreeMap<ContainerName, Current> =
            old.iter().map(|(n, w)| (n.clone(), Current { spec: Some(w.spec.clone()), digest: w.digest.clone() })).collect();
        let plan = plan(&current, &new, &BTreeMap::new());
        prop_assert_eq!(plan.steps.len(), new.len() + current.keys().filter(|n| !new.contains_key(*n)).count());
        let restarting: BTreeSet<&str> = plan.steps.iter()
            .filter(|s| matches!(s.action, Action::Change | Action::RestartDependent)).map(|s| s.name.as_str()).collect();
        for step in &plan.steps {
            let n = name(&step.name);
            match step.action {
                Action::Remove => prop_assert!(!new.contains_key(&n)),
                Action::Add => prop_assert!(!current.contains_key(&n)),
                Action::Change => {
                    let (was, now) = (&current[&n], &new[&n]);
                    prop_assert!(was.spec.as_ref() != Some(&now.spec) || was.digest != now.digest);
                }
                Action::RestartDependent => {
                    prop_assert!(new[&n].spec.depends_on.iter().any(|d| d.condition == DependencyCondition::Started
                        && restarting.contains(d.name.as_str())));
                }
                Action::Unchanged => {
                    prop_assert!(current[&n].spec.as_ref() == Some(&new[&n].spec));
                    prop_assert!(!new[&n].spec.depends_on.iter().any(|d| d.condition == DependencyCondition::Started
                        && restarting.contains(d.name.as_str())));
                }
            }
        }
        // Start order: a wanted container's step comes after its dependencies' steps.
        let position = |n: &str| plan.steps.iter().position(|s| s.name == n && s.action != Action::Remove);
        for (n, w) in &new {
            for d in &w.spec.depends_on {
                prop_assert!(position(d.name.as_str()) < position(n.as_str()));
            }
        }
        let same: BTreeMap<ContainerName, Current> =
            new.iter().map(|(n, w)| (n.clone(), Current { spec: Some(w.spec.clone()), digest: w.digest.clone() })).collect();
        prop_assert!(super::plan(&same, &new, &BTreeMap::new()).is_noop());
    }
}
