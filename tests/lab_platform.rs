//! The platform layer against a real Kubernetes v1.20 API server and real
//! pods (tests/lab/up.sh kube): the `lab-apps` stack of tests/fixtures/platform
//! runs the lab's own busybox image, so readiness is observed on pods a
//! kubelet really runs. Deploy, no-op redeploy (managedFields unchanged), a
//! changed value touching only what renders differently, pruning, rollback, a
//! changed CRD, a deploy SIGKILLed mid-way, readiness failures with their
//! reasons, bad input that changes nothing, and destroy.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, test only
const ENV: &str = "lab-platform";
const NS: &str = "lab-apps";

/// The tests share one namespace and one CRD: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Lab {
    state_dir: PathBuf,
    charts: PathBuf,
}

impl Lab {
    /// A fresh state and a clean namespace.
    fn new(name: &str) -> Self {
        common::lab_var("KUBECONFIG", "kube");
        let state_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-state").join(name);
        let _ = std::fs::remove_dir_all(&state_dir);
        kubectl(&["delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=120s"]);
        kubectl(&["delete", "crd", "widgets.lab.example.org", "--ignore-not-found", "--wait=true"]);
        Lab { state_dir, charts: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/platform") }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--environments", "tests/fixtures/environments", "--charts"])
            .arg(&self.charts)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn deploy(&self, extra: &[&str]) -> Output {
        let mut a = vec!["deploy", ENV, "--auto-approve", "--output", "json"];
        a.extend_from_slice(extra);
        self.run(&a)
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl").args(args).output().expect("kubectl")
}

fn kget(args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let o = kubectl(&a);
    o.status.success().then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// resourceVersion and managedFields of every object of the environment.
fn snapshot() -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    // Objects of the releases (their history Secrets carry no release label).
    let all = kget(&["configmap,secret,service,deployment,job,widgets", "-n", NS, "-l", &format!("provisioner.io/environment={ENV},provisioner.io/release")]).unwrap();
    let crd = kget(&["crd", "widgets.lab.example.org"]);
    for o in all["items"].as_array().unwrap().iter().chain(crd.iter()) {
        let key = format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
        out.insert(key, (o["metadata"]["resourceVersion"].as_str().unwrap().to_owned(), o["metadata"]["managedFields"].to_string()));
    }
    out
}

fn changed(a: &BTreeMap<String, (String, String)>, b: &BTreeMap<String, (String, String)>) -> Vec<String> {
    b.iter().filter(|(k, v)| a.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
}

fn kill_after(mut child: Child, after: Duration) {
    std::thread::sleep(after);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh kube"]
fn deploy_redeploy_change_prune_rollback_crd_kill_and_destroy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("lab-platform-main");

    // Install: both releases, every object, ready (Deployment available, Job complete).
    let out = lab.deploy(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dep = kget(&["deployment", "app-web", "-n", NS]).unwrap();
    assert_eq!(dep["status"]["availableReplicas"], 1, "{dep}");
    let job = kget(&["job", "app-migrate", "-n", NS]).unwrap();
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert!(kget(&["widget", "app-widget", "-n", NS]).is_some());
    assert!(kget(&["configmap", "app-extra", "-n", NS]).is_some());
    let logs = kubectl(&["logs", "-n", NS, "job/app-migrate"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("migrated"), "the Job's pod ran for real");
    let first = snapshot();

    // No-op: a second deploy writes nothing; plan against the live cluster says no change.
    let out = lab.deploy(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["summary"]["update"], 0, "{r}");
    let plan = lab.run(&["plan", ENV, "--deploy"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(changed(&first, &snapshot()), Vec::<String>::new(), "a no-op deploy changed objects");

    // A changed value: the plan names the objects and fields; only they change.
    let plan = lab.run(&["plan", ENV, "--deploy", "--set", "app.message=changed", "--output", "json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let p = json(&plan);
    let app = p["changes"].as_array().unwrap().iter().find(|c| c["address"] == "release.app").unwrap();
    assert_eq!(app["basis"], "the live cluster (server-side dry-run)");
    let keys: Vec<&str> = app["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["ConfigMap/lab-apps/app-config", "Deployment.apps/lab-apps/app-web"], "{app}");
    let out = lab.deploy(&["--set", "app.message=changed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = snapshot();
    let mut moved = changed(&first, &after);
    moved.retain(|k| !k.starts_with("ReplicaSet"));
    assert_eq!(moved, vec!["ConfigMap/app-config", "Deployment/app-web"], "only what renders differently changes");

    // A template no longer rendered is pruned.
    let out = lab.deploy(&["--set", "app.message=changed", "--set", "app.extra.enabled=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(kget(&["configmap", "app-extra", "-n", NS]).is_none(), "app-extra was not pruned");

    // Rollback restores the previous revision (extra back), as a new revision.
    let out = lab.run(&["rollback", ENV, "app", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(kget(&["configmap", "app-extra", "-n", NS]).is_some(), "rollback did not restore app-extra");
    let rel = lab.run(&["releases", ENV, "--output", "json"]);
    let rels = json(&rel);
    let app = rels.as_array().unwrap().iter().find(|r| r["release"] == "app").unwrap();
    let statuses: Vec<&str> = app["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["superseded", "superseded", "superseded", "deployed"], "{app}");
    assert!(app["history"][3]["description"].as_str().unwrap().contains("rollback to 2"), "{app}");
    // The next plan leads back to what the environment says.
    assert_eq!(lab.run(&["plan", ENV, "--deploy", "--set", "app.message=changed", "--set", "app.extra.enabled=false"]).status.code(), Some(2));

    // A changed CRD is applied.
    let out = lab.deploy(&["--set", "app.crd.extraField=true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let crd = kget(&["crd", "widgets.lab.example.org"]).unwrap();
    assert!(crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/colour").is_some(), "the CRD change was not applied");

    // SIGKILL in the middle of a deploy; the rerun finishes it.
    let child = lab.cmd(&["deploy", ENV, "--auto-approve", "--set", "app.message=killed"]).env("PROVISIONER_APPLY_DELAY_MS", "1500").spawn().unwrap();
    kill_after(child, Duration::from_millis(2500));
    let out = lab.deploy(&["--set", "app.message=killed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let cm = kget(&["configmap", "app-config", "-n", NS]).unwrap();
    assert_eq!(cm["data"]["message"], "killed");
    assert_eq!(lab.run(&["plan", ENV, "--deploy", "--set", "app.message=killed"]).status.code(), Some(0), "converged after the kill");

    // destroy removes the releases, their objects and the namespace (from state:
    // --refresh=false skips the sweep of the cloud, which this test does not use).
    let out = lab.run(&["destroy", ENV, "--auto-approve", "--refresh=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(kget(&["namespace", NS]).is_none(), "namespace left behind");
    assert!(kget(&["crd", "widgets.lab.example.org"]).is_none(), "CRD left behind");
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh kube"]
fn readiness_failures_say_why() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("lab-platform-ready");
    for (set, wants) in [
        ("app.image=localhost/lab/nope:1", &["waiting: ErrImageNeverPull"][..]),
        // A crashing container: its exit code (between restarts "exited 3", while
        // backing off "CrashLoopBackOff … last exit 3").
        ("app.command=[\"sh\",\"-c\",\"exit 3\"]", &["exited 3", "last exit 3"][..]),
        ("app.probePath=/missing", &["Readiness probe failed"][..]),
    ] {
        let out = lab.run(&["deploy", ENV, "--auto-approve", "--target", "release.app", "--set", set]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{set}: {msg}");
        assert!(msg.contains("Deployment.apps/lab-apps/app-web") && wants.iter().any(|w| msg.contains(w)), "{set}: wanted {wants:?}: {msg}");
    }
    // A failed Job is reported as such at once.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--target", "release.app", "--set", "app.job.command=[\"sh\",\"-c\",\"echo broken; exit 1\"]", "--set", "app.job.version=\"2\""]);
    let msg = text(&out);
    assert!(msg.contains("Job.batch/lab-apps/app-migrate") && msg.contains("the Job failed"), "{msg}");
    // Fixed, it converges.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--target", "release.app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lab.run(&["destroy", ENV, "--auto-approve", "--refresh=false"]).status.code(), Some(0));
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh kube"]
fn bad_input_is_named_and_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("lab-platform-bad");
    let untouched = |what: &str| {
        assert!(!lab.state_dir.join(format!("{ENV}.state.json")).exists(), "{what}: state was written");
        assert!(kget(&["namespace", NS]).is_none(), "{what}: the namespace was created");
    };
    // A value of the wrong type: the file, the key, the type.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--set", "app.replicas=two"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("values.schema.json") && text(&out).contains("releases.app.replicas") && text(&out).contains("expected integer"), "{}", text(&out));
    untouched("type error");
    // An unknown release.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--set", "nope.replicas=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("`nope`") && text(&out).contains("app, app2"), "{}", text(&out));
    untouched("unknown release");
    // A template error: the template's file and line.
    let broken = lab.state_dir.join("charts-broken");
    copy_dir(&lab.charts, &broken);
    std::fs::write(broken.join("charts/lab-app/templates/oops.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Values.nope.deeper }}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--environments", "tests/fixtures/environments", "--charts"])
        .arg(&broken)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args(["deploy", ENV, "--auto-approve"])
        .env("PROVISIONER_STATE_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("charts/lab-app/templates/oops.yaml") && text(&out).contains(":4:"), "{}", text(&out));
    untouched("template error");
    // A custom resource whose CRD nobody ships or serves.
    std::fs::write(broken.join("charts/lab-app/templates/oops.yaml"), "apiVersion: nope.example.org/v1\nkind: Gadget\nmetadata:\n  name: g\nspec: {}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--environments", "tests/fixtures/environments", "--charts"])
        .arg(&broken)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args(["deploy", ENV, "--auto-approve"])
        .env("PROVISIONER_STATE_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Gadget") && text(&out).contains("no release ships its CRD"), "{}", text(&out));
    assert!(kget(&["namespace", NS]).is_none(), "missing CRD: the namespace was created");
    // An unreachable cluster: said with its address, exit 3 (retry later), nothing changed.
    let kc = lab.state_dir.join("closed.kubeconfig");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    let out = lab.run(&["--kubeconfig", kc.to_str().unwrap(), "deploy", ENV, "--auto-approve"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("cannot reach the cluster at https://127.0.0.1:9"), "{}", text(&out));
    untouched("unreachable cluster");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
