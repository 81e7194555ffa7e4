//! The OpenStack layer against the lab's real Keystone/Nova/Neutron/Cinder/
//! Glance (tests/lab openstack): converge from empty, no-change replans with
//! read calls only, SIGKILLed runs that converge without duplicates or
//! orphans (counted by tag through openstacksdk, an independent reader),
//! destroy that leaves nothing, quota preflight, and the three auth methods.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // test only

struct Env {
    name: String,
    state_dir: PathBuf,
    cloud: Option<&'static str>,
}

impl Env {
    fn new(prefix: &str) -> Self {
        common::lab_var("OS_CLIENT_CONFIG_FILE", "openstack");
        let name = common::unique(prefix);
        let state_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-state")
            .join(&name);
        Env {
            name,
            state_dir,
            cloud: None,
        }
    }

    fn cmd(&self, args: &[&str], delay_ms: u64) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "--environments",
                "tests/fixtures/environments",
                "--state-dir",
            ])
            .arg(&self.state_dir);
        if let Some(cl) = self.cloud {
            c.args(["--cloud", cl]);
        }
        // The environment name follows the (sub)command: `up NAME …`, `state rebuild NAME …`.
        let at = if args.first() == Some(&"state") { 2 } else { 1 };
        c.args(&args[..at]).arg(&self.name).args(&args[at..]);
        if changes_things(args) {
            c.arg("--auto-approve");
        }
        c.env("PROVISIONER_STATE_KEY", KEY)
            .env("PROVISIONER_APPLY_DELAY_MS", delay_ms.to_string())
            .env_remove("OS_CLOUD")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args, 0).output().unwrap()
    }

    fn spawn(&self, args: &[&str], delay_ms: u64) -> Child {
        self.cmd(args, delay_ms).spawn().unwrap()
    }

    fn serial(&self) -> u64 {
        std::fs::read_to_string(self.state_dir.join(format!("{}.state.json", self.name)))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["serial"].as_u64())
            .unwrap_or(0)
    }

    fn state_addrs(&self) -> BTreeMap<String, String> {
        let text =
            std::fs::read_to_string(self.state_dir.join(format!("{}.state.json", self.name)))
                .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        v["resources"]
            .as_object()
            .map(|r| {
                r.iter()
                    .map(|(k, rec)| (k.clone(), rec["id"].as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// kind -> [[address, id, status]] as openstacksdk sees it.
    fn owned(&self) -> BTreeMap<String, Vec<Vec<String>>> {
        let out = Command::new("/usr/bin/python3")
            .arg("tests/support/count_owned.py")
            .arg(&self.name)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("OS_CLOUD", "lab-demo")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "count_owned.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Right after a kill: resources may exist that state records only as
    /// `creating` (that is what the next run adopts), but no address twice.
    fn assert_no_duplicates(&self, when: &str) {
        let owned = self.owned();
        let mut seen = std::collections::BTreeSet::new();
        for (kind, items) in owned.iter().filter(|(k, _)| k.as_str() != "server_group") {
            for it in items.iter().filter(|it| !it[0].starts_with("(untagged)")) {
                assert!(
                    seen.insert(it[0].clone()),
                    "{when}: duplicate {kind} {}: {owned:?}",
                    it[0]
                );
            }
        }
    }

    /// No address owned twice, nothing owned that state does not know.
    fn assert_no_duplicates_or_orphans(&self, when: &str) {
        let owned = self.owned();
        let state = self.state_addrs();
        let mut seen = BTreeMap::new();
        for (kind, items) in &owned {
            assert!(!kind.ends_with("_error"), "{when}: {kind}: {items:?}");
            for it in items {
                let (addr, id) = (&it[0], &it[1]);
                assert!(
                    !addr.starts_with("(untagged)"),
                    "{when}: untagged leftover {kind} {addr} {id}"
                );
                if kind == "server_group" {
                    continue; // named, not addressed
                }
                assert!(
                    seen.insert(addr.clone(), id.clone()).is_none(),
                    "{when}: duplicate {addr}: {owned:?}"
                );
                assert_eq!(
                    state.get(addr),
                    Some(id),
                    "{when}: orphan {kind} {addr} {id} not in state {state:?}"
                );
            }
        }
    }

    fn total_owned(&self) -> usize {
        self.owned()
            .iter()
            .filter(|(k, _)| !k.ends_with("_error"))
            .map(|(_, v)| v.len())
            .sum()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn kill_at_serial(env: &Env, child: Child, serial: u64) -> bool {
    let mut child = child;
    let t = Instant::now();
    while env.serial() < serial {
        if let Ok(Some(_)) = child.try_wait() {
            return false; // finished before that point
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "serial {serial} never reached"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh openstack"]
fn up_converges_replans_clean_and_destroy_leaves_nothing() {
    let env = Env::new("labos");
    let out = env.run(&["up", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["api_calls"].as_u64().unwrap() > 0);
    let owned = env.owned();
    let servers = &owned["server"];
    assert_eq!(servers.len(), 3, "{owned:?}");
    assert!(servers.iter().all(|s| s[2] == "ACTIVE"), "{servers:?}");
    assert_eq!(owned["floating_ip"].len(), 1);
    assert_eq!(
        owned["floating_ip"][0][2], "ACTIVE",
        "floating IP associated"
    );
    assert_eq!(owned["volume"][0][2], "in-use", "etcd volume attached");
    env.assert_no_duplicates_or_orphans("after up");

    // Converged: no change, and the plan made read calls only (no state write either).
    let serial = env.serial();
    let plan = env.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(env.serial(), serial);
    let again = env.run(&["up", "--output", "json"]);
    let r: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(r["summary"]["create"], 0, "{r}");

    // Drift: rename the network by hand; plan sees it and up repairs it in place.
    let net_id = env.state_addrs()["network.main"].clone();
    let st = Command::new("/usr/bin/openstack")
        .args(["network", "set", "--name", "renamed-by-hand", &net_id])
        .env("OS_CLOUD", "lab-demo")
        .status()
        .unwrap();
    assert!(st.success());
    let plan = env.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(text(&plan).contains("renamed-by-hand"), "{}", text(&plan));
    assert_eq!(env.run(&["up"]).status.code(), Some(0));
    assert_eq!(env.run(&["plan"]).status.code(), Some(0));

    // Lost state: rebuild it from ownership tags, then up adopts the rest
    // (router interfaces, volume attachments), secrets are generated anew, no duplicate.
    std::fs::remove_file(env.state_dir.join(format!("{}.state.json", env.name))).unwrap();
    let rb = env.run(&["state", "rebuild", "--output", "json"]);
    assert_eq!(rb.status.code(), Some(0), "{}", text(&rb));
    let rebuilt: Value = serde_json::from_slice(&rb.stdout).unwrap();
    let n = rebuilt["rebuilt"].as_array().unwrap().len();
    assert!(n >= 14, "rebuilt only {n}: {rebuilt}");
    let up = env.run(&["up", "--output", "json"]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    let r: Value = serde_json::from_slice(&up.stdout).unwrap();
    let created: Vec<&str> = r["report"]["created"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        created.iter().all(|a| a.starts_with("secret.")),
        "only secrets are new after a rebuild: {r}"
    );
    env.assert_no_duplicates_or_orphans("after rebuild + up");

    // Lost state again: destroy sweeps what the tags say is ours.
    std::fs::remove_file(env.state_dir.join(format!("{}.state.json", env.name))).unwrap();
    let d = env.run(&["destroy"]);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d));
    assert_eq!(env.total_owned(), 0, "destroy left {:?}", env.owned());
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh openstack"]
fn killed_runs_converge_without_duplicates_or_orphans() {
    let env = Env::new("labos-kill");
    // A crash that leaves servers made but recorded only as `creating`, then
    // `destroy` with no `up` in between: it finds them by tag and leaves nothing.
    // Long pauses keep servers in `creating` for seconds, so the poll cannot miss them.
    let child = env.spawn(&["up"], 800);
    let t = Instant::now();
    let mut child = child;
    loop {
        let creating_server =
            std::fs::read_to_string(env.state_dir.join(format!("{}.state.json", env.name)))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| {
                    v["resources"].as_object().is_some_and(|r| {
                        r.iter()
                            .any(|(k, rec)| k.starts_with("server.") && rec["status"] == "creating")
                    })
                });
        if creating_server && env.owned().get("server").is_some_and(|s| !s.is_empty()) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "up finished before a server was caught mid-create"
        );
        assert!(t.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = env.run(&["destroy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        env.total_owned(),
        0,
        "destroy after a mid-create crash left {:?}",
        env.owned()
    );

    // Kill `up` at several points of the walk (state serials), rerunning each time.
    let mut kills = 0;
    for at in [3, 9, 16, 24, 31] {
        let child = env.spawn(&["up"], 150);
        if !kill_at_serial(&env, child, at) {
            break;
        }
        kills += 1;
        env.assert_no_duplicates(&format!("after SIGKILL at serial {at}"));
    }
    assert!(kills >= 3, "only {kills} runs were killed mid-walk");
    let out = env.run(&["up"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env.assert_no_duplicates_or_orphans("after the converging run");
    assert_eq!(env.owned()["server"].len(), 3);
    assert_eq!(env.run(&["plan"]).status.code(), Some(0));

    // Destroy killed midway, then finished.
    let s = env.serial();
    let child = env.spawn(&["destroy"], 150);
    kill_at_serial(&env, child, s + 6);
    let out = env.run(&["destroy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        env.total_owned(),
        0,
        "destroy after a crash left {:?}",
        env.owned()
    );
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh openstack"]
fn quota_exhaustion_is_reported_before_anything_is_created() {
    let mut env = Env::new("labos-quota");
    env.cloud = Some("lab-quota");
    let out = env.run(&["up"]);
    // Exit 4: the project's quota is what needs raising.
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("preflight failed") && msg.contains("instances") && msg.contains("left"),
        "{msg}"
    );
    assert!(msg.contains("the plan needs 3 instances"), "{msg}");
    assert!(
        !env.state_dir
            .join(format!("{}.state.json", env.name))
            .exists(),
        "state was written"
    );
    // Nothing in the quota project either.
    let out = Command::new("/usr/bin/python3")
        .arg("tests/support/count_owned.py")
        .arg(&env.name)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OS_CLOUD", "lab-quota")
        .output()
        .unwrap();
    let owned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(owned, serde_json::json!({}), "something was created");
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh openstack"]
fn password_application_credential_and_os_variables_all_authenticate() {
    // Plans with refresh need a session; an empty state makes no cloud calls, so
    // create one network-only record first through the app credential.
    let env = Env::new("labos-auth");
    let out = env.run(&["up", "--target", "network"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for cloud in ["lab-demo", "lab-demo-appcred"] {
        let mut e = Env {
            name: env.name.clone(),
            state_dir: env.state_dir.clone(),
            cloud: Some(cloud),
        };
        let plan = e.run(&["plan", "--target", "network"]);
        assert_eq!(plan.status.code(), Some(0), "{cloud}: {}", text(&plan));
        e.cloud = None;
    }
    // Plain OS_* variables, password and application credential.
    let url = common::lab_var("LAB_OS_AUTH_URL", "openstack");
    let pw = common::lab_var("LAB_OS_DEMO_PASSWORD", "openstack");
    let (ac_id, ac_secret) = (
        common::lab_var("LAB_OS_APPCRED_ID", "openstack"),
        common::lab_var("LAB_OS_APPCRED_SECRET", "openstack"),
    );
    let vars: [Vec<(&str, &str)>; 2] = [
        vec![
            ("OS_AUTH_URL", &url),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", &pw),
            ("OS_PROJECT_NAME", "demo"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionOne"),
        ],
        vec![
            ("OS_AUTH_URL", &url),
            ("OS_AUTH_TYPE", "v3applicationcredential"),
            ("OS_APPLICATION_CREDENTIAL_ID", &ac_id),
            ("OS_APPLICATION_CREDENTIAL_SECRET", &ac_secret),
            ("OS_REGION_NAME", "RegionOne"),
        ],
    ];
    for v in &vars {
        // OS_AUTH_URL set and no --cloud/OS_CLOUD: the OS_* variables win over cloud.name.
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "--environments",
                "tests/fixtures/environments",
                "--state-dir",
            ])
            .arg(&env.state_dir)
            .args(["plan", &env.name, "--target", "network"])
            .env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("OS_CLOUD")
            .env_remove("OS_CLIENT_CONFIG_FILE");
        for (k, val) in v {
            c.env(k, val);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{:?}: {}", v[1], text(&out));
    }
    assert_eq!(env.run(&["destroy"]).status.code(), Some(0));
    assert_eq!(env.total_owned(), 0);
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh openstack"]
fn flavor_change_resizes_in_place_and_image_change_is_a_replace() {
    let state_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-state/labos-resize");
    let _ = std::fs::remove_dir_all(&state_dir);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .args(changes_things(args).then_some("--auto-approve"))
            .env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap()
    };
    let a = "tests/fixtures/environments/resize-a.yaml";
    let b = "tests/fixtures/environments/resize-b.yaml";
    let out = run(&["up", a]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id_before = {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(state_dir.join("labos-resize.state.json")).unwrap(),
        )
        .unwrap();
        v["resources"]["server.worker[0]"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // The image is identity: the plan says REPLACE and why, with the data-loss warning.
    let plan = run(&[
        "plan",
        "tests/fixtures/environments/reimage.yaml",
        "--output",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(2));
    let p: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let w = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "server.worker[0]")
        .unwrap();
    assert_eq!(w["action"], "replace", "{w}");
    assert_eq!(w["data_loss"], true);
    assert!(w["reason"].as_str().unwrap().contains("image"), "{w}");

    // The flavor is a resize: update in place, same server id, new flavor live.
    let plan = run(&["plan", b, "--output", "json"]);
    let p: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let w = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "server.worker[0]")
        .unwrap();
    assert_eq!(w["action"], "update", "{w}");
    let out = run(&["up", b]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(state_dir.join("labos-resize.state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        v["resources"]["server.worker[0]"]["id"].as_str().unwrap(),
        id_before,
        "resized, not replaced"
    );
    let show = Command::new("/usr/bin/openstack")
        .args(["server", "show", &id_before, "-f", "json"])
        .env("OS_CLOUD", "lab-demo")
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(
        s["flavor"].to_string().contains("m1.small"),
        "live flavor: {}",
        s["flavor"]
    );
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(
        run(&["plan", b]).status.code(),
        Some(0),
        "converged after the resize"
    );
    assert_eq!(run(&["destroy", b]).status.code(), Some(0));
}

/// The commands that ask for approval run here with `--auto-approve`, as in CI.
fn changes_things(args: &[&str]) -> bool {
    matches!(args.first(), Some(&("up" | "destroy" | "deploy")))
}
