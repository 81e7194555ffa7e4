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
        let state_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-state")
            .join(name);
        let _ = std::fs::remove_dir_all(&state_dir);
        kubectl(&[
            "delete",
            "namespace",
            NS,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ]);
        kubectl(&[
            "delete",
            "crd",
            "widgets.lab.example.org",
            "--ignore-not-found",
            "--wait=true",
        ]);
        Lab {
            state_dir,
            charts: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/platform"),
        }
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
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl")
}

fn kget(args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let o = kubectl(&a);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// resourceVersion and managedFields of every object of the environment.
fn snapshot() -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    // Objects of the releases (their history Secrets carry no release label).
    let all = kget(&[
        "configmap,secret,service,deployment,job,widgets",
        "-n",
        NS,
        "-l",
        &format!("provisioner.io/environment={ENV},provisioner.io/release"),
    ])
    .unwrap();
    let crd = kget(&["crd", "widgets.lab.example.org"]);
    for o in all["items"].as_array().unwrap().iter().chain(crd.iter()) {
        let key = format!(
            "{}/{}",
            o["kind"].as_str().unwrap(),
            o["metadata"]["name"].as_str().unwrap()
        );
        out.insert(
            key,
            (
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                o["metadata"]["managedFields"].to_string(),
            ),
        );
    }
    out
}

fn changed(
    a: &BTreeMap<String, (String, String)>,
    b: &BTreeMap<String, (String, String)>,
) -> Vec<String> {
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
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
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("migrated"),
        "the Job's pod ran for real"
    );
    let first = snapshot();

    // No-op: a second deploy writes nothing; plan against the live cluster says no change.
    let out = lab.deploy(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["summary"]["update"], 0, "{r}");
    let plan = lab.run(&["plan", ENV, "--deploy"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(
        changed(&first, &snapshot()),
        Vec::<String>::new(),
        "a no-op deploy changed objects"
    );

    // A changed value: the plan names the objects and fields; only they change.
    let plan = lab.run(&[
        "plan",
        ENV,
        "--deploy",
        "--set",
        "app.message=changed",
        "--output",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let p = json(&plan);
    let app = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "release.app")
        .unwrap();
    assert_eq!(app["basis"], "the live cluster (server-side dry-run)");
    let keys: Vec<&str> = app["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            "ConfigMap/lab-apps/app-config",
            "Deployment.apps/lab-apps/app-web"
        ],
        "{app}"
    );
    let out = lab.deploy(&["--set", "app.message=changed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = snapshot();
    let mut moved = changed(&first, &after);
    moved.retain(|k| !k.starts_with("ReplicaSet"));
    assert_eq!(
        moved,
        vec!["ConfigMap/app-config", "Deployment/app-web"],
        "only what renders differently changes"
    );

    // A template no longer rendered is pruned.
    let out = lab.deploy(&[
        "--set",
        "app.message=changed",
        "--set",
        "app.extra.enabled=false",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        kget(&["configmap", "app-extra", "-n", NS]).is_none(),
        "app-extra was not pruned"
    );

    // Rollback restores the previous revision (extra back), as a new revision.
    let out = lab.run(&["rollback", ENV, "app", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        kget(&["configmap", "app-extra", "-n", NS]).is_some(),
        "rollback did not restore app-extra"
    );
    let rel = lab.run(&["releases", ENV, "--output", "json"]);
    let rels = json(&rel);
    let app = rels
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["release"] == "app")
        .unwrap();
    let statuses: Vec<&str> = app["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["superseded", "superseded", "superseded", "deployed"],
        "{app}"
    );
    assert!(
        app["history"][3]["description"]
            .as_str()
            .unwrap()
            .contains("rollback to 2"),
        "{app}"
    );
    // The next plan leads back to what the environment says.
    assert_eq!(
        lab.run(&[
            "plan",
            ENV,
            "--deploy",
            "--set",
            "app.message=changed",
            "--set",
            "app.extra.enabled=false"
        ])
        .status
        .code(),
        Some(2)
    );

    // A changed CRD is applied.
    let out = lab.deploy(&["--set", "app.crd.extraField=true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let crd = kget(&["crd", "widgets.lab.example.org"]).unwrap();
    assert!(
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/colour")
            .is_some(),
        "the CRD change was not applied"
    );

    // SIGKILL in the middle of a deploy; the rerun finishes it.
    let child = lab
        .cmd(&[
            "deploy",
            ENV,
            "--auto-approve",
            "--set",
            "app.message=killed",
        ])
        .env("PROVISIONER_APPLY_DELAY_MS", "1500")
        .spawn()
        .unwrap();
    kill_after(child, Duration::from_millis(2500));
    let out = lab.deploy(&["--set", "app.message=killed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let cm = kget(&["configmap", "app-config", "-n", NS]).unwrap();
    assert_eq!(cm["data"]["message"], "killed");
    assert_eq!(
        lab.run(&["plan", ENV, "--deploy", "--set", "app.message=killed"])
            .status
            .code(),
        Some(0),
        "converged after the kill"
    );

    // destroy removes the releases, their objects and the namespace (from state:
    // --refresh=false skips the sweep of the cloud, which this test does not use).
    let out = lab.run(&["destroy", ENV, "--auto-approve", "--refresh=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(kget(&["namespace", NS]).is_none(), "namespace left behind");
    assert!(
        kget(&["crd", "widgets.lab.example.org"]).is_none(),
        "CRD left behind"
    );
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh kube"]
fn readiness_failures_say_why() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("lab-platform-ready");
    for (set, wants) in [
        (
            "app.image=localhost/lab/nope:1",
            &["waiting: ErrImageNeverPull"][..],
        ),
        // A crashing container: its exit code (between restarts "exited 3", while
        // backing off "CrashLoopBackOff … last exit 3").
        (
            "app.command=[\"sh\",\"-c\",\"exit 3\"]",
            &["exited 3", "last exit 3"][..],
        ),
        ("app.probePath=/missing", &["Readiness probe failed"][..]),
    ] {
        let out = lab.run(&[
            "deploy",
            ENV,
            "--auto-approve",
            "--target",
            "release.app",
            "--set",
            set,
        ]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{set}: {msg}");
        assert!(
            msg.contains("Deployment.apps/lab-apps/app-web")
                && wants.iter().any(|w| msg.contains(w)),
            "{set}: wanted {wants:?}: {msg}"
        );
    }
    // A failed Job is reported as such at once.
    let out = lab.run(&[
        "deploy",
        ENV,
        "--auto-approve",
        "--target",
        "release.app",
        "--set",
        "app.job.command=[\"sh\",\"-c\",\"echo broken; exit 1\"]",
        "--set",
        "app.job.version=\"2\"",
    ]);
    let msg = text(&out);
    assert!(
        msg.contains("Job.batch/lab-apps/app-migrate") && msg.contains("the Job failed"),
        "{msg}"
    );
    // Fixed, it converges.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--target", "release.app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        lab.run(&["destroy", ENV, "--auto-approve", "--refresh=false"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh kube"]
fn bad_input_is_named_and_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("lab-platform-bad");
    let untouched = |what: &str| {
        assert!(
            !lab.state_dir.join(format!("{ENV}.state.json")).exists(),
            "{what}: state was written"
        );
        assert!(
            kget(&["namespace", NS]).is_none(),
            "{what}: the namespace was created"
        );
    };
    // A value of the wrong type: the file, the key, the type.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--set", "app.replicas=two"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("values.schema.json")
            && text(&out).contains("releases.app.replicas")
            && text(&out).contains("expected integer"),
        "{}",
        text(&out)
    );
    untouched("type error");
    // An unknown release.
    let out = lab.run(&["deploy", ENV, "--auto-approve", "--set", "nope.replicas=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("`nope`") && text(&out).contains("app, app2"),
        "{}",
        text(&out)
    );
    untouched("unknown release");
    // A template error: the template's file and line.
    let broken = lab.state_dir.join("charts-broken");
    copy_dir(&lab.charts, &broken);
    let broken_lab = Lab {
        state_dir: lab.state_dir.clone(),
        charts: broken.clone(),
    };
    std::fs::write(
        broken.join("charts/lab-app/templates/oops.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Values.nope.deeper }}\n",
    )
    .unwrap();
    let out = broken_lab.run(&["deploy", ENV, "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("charts/lab-app/templates/oops.yaml") && text(&out).contains(":4:"),
        "{}",
        text(&out)
    );
    untouched("template error");
    // A custom resource whose CRD nobody ships or serves.
    std::fs::write(
        broken.join("charts/lab-app/templates/oops.yaml"),
        "apiVersion: nope.example.org/v1\nkind: Gadget\nmetadata:\n  name: g\nspec: {}\n",
    )
    .unwrap();
    let out = broken_lab.run(&["deploy", ENV, "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Gadget") && text(&out).contains("no release ships its CRD"),
        "{}",
        text(&out)
    );
    assert!(
        kget(&["namespace", NS]).is_none(),
        "missing CRD: the namespace was created"
    );
    // An unreachable cluster: said with its address, exit 3 (retry later), nothing changed.
    let kc = lab.state_dir.join("closed.kubeconfig");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    let out = lab.run(&[
        "--kubeconfig",
        kc.to_str().unwrap(),
        "deploy",
        ENV,
        "--auto-approve",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("cannot reach the cluster at https://127.0.0.1:9"),
        "{}",
        text(&out)
    );
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

/// The shipped data-platform stack on the lab (environments/lab.yaml): every
/// object of every chart is applied and accepted by the API server (which
/// validates it against its OpenAPI schema and our CRDs); a second deploy and
/// a plan change nothing; `workload submit` creates a Workflow with the
/// template's parameters; the webhook (run as `provisioner workload webhook`
/// in an image of this very binary) accepts a POST with the token and refuses
/// one without. Upstream images (Argo, PostGIS, …) cannot run here, so the
/// stack is not waited for (platform.wait: false in lab.yaml).
#[test]
#[ignore = "lab: needs tests/lab/up.sh kube"]
fn data_platform_on_the_lab_submit_and_webhook() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::lab_var("KUBECONFIG", "kube");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state_dir = root.join("target/test-state/lab-data-platform");
    let _ = std::fs::remove_dir_all(&state_dir);
    // The lab's workload image: this binary, its libraries, a non-root user.
    let img = Command::new("bash")
        .arg("tests/support/provisioner_image.sh")
        .arg(env!("CARGO_BIN_EXE_provisioner"))
        .arg("localhost/lab/provisioner:dev")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(img.status.success(), "image: {}", text(&img));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .current_dir(root)
            .args(["--environments", "environments", "--state-dir"])
            .arg(&state_dir)
            .args(args)
            .env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["deploy", "lab", "--auto-approve", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Every rendered object exists in the cluster.
    let rendered = run(&["render", "lab", "--output", "json"]);
    let releases = json(&rendered);
    let mut missing = Vec::new();
    let mut count = 0;
    for r in releases.as_array().unwrap() {
        for key in r["objects"].as_object().unwrap().keys() {
            count += 1;
            let id = provisioner::charts::ObjectId::parse(key).unwrap();
            let kind = if id.group.is_empty() {
                id.kind.clone()
            } else {
                format!("{}.{}", id.kind, id.group)
            };
            let mut a = vec![kind.to_lowercase(), id.name.clone()];
            if let Some(ns) = &id.namespace {
                a.extend(["-n".to_owned(), ns.clone()]);
            }
            if kget(&a.iter().map(String::as_str).collect::<Vec<_>>()).is_none() {
                missing.push(key.clone());
            }
        }
    }
    assert!(missing.is_empty(), "not in the cluster: {missing:?}");
    assert!(count > 50, "only {count} objects rendered");

    // Every option each chart leaves off (ingresses, TLS, HPAs, PDBs, …), turned
    // on: the API server accepts every object (server-side dry-run, kubectl).
    let sets = every_option(root);
    assert!(sets.len() >= 10, "{sets:?}");
    let dir = state_dir.join("all-options");
    let mut args = vec![
        "render".to_owned(),
        "lab".to_owned(),
        "--out".to_owned(),
        dir.display().to_string(),
    ];
    args.extend(sets.iter().map(|s| format!("--set={s}")));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Outputs are filled at apply time; a placeholder of the right form (base64) stands in.
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        let t = std::fs::read_to_string(&f)
            .unwrap()
            .replace("((output:webhookCA))", "Y2E=")
            .replace("((output:webhookVersion))", "v1");
        std::fs::write(&f, t).unwrap();
    }
    // Another field manager than the deploy's, forced: only validity is checked.
    let dry = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--field-manager=dry-run-check",
        "-f",
        dir.to_str().unwrap(),
    ]);
    assert!(
        dry.status.success(),
        "server-side dry-run with every option on: {}",
        text(&dry)
    );
    let accepted = String::from_utf8_lossy(&dry.stdout).lines().count();
    assert!(
        accepted > count,
        "{accepted} objects accepted, {count} without the options"
    );

    // A second deploy changes nothing, and the plan against the live cluster agrees.
    let out = run(&["deploy", "lab", "--auto-approve", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["summary"]["update"], 0, "{}", text(&out));
    let plan = run(&["plan", "lab", "--deploy"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // The Spark operator's webhook certificate: generated by the provisioner, its
    // CA in the webhook configuration, the serving certificate in the Secret.
    let verify_webhook_chain = || -> String {
        let hook = kget(&["mutatingwebhookconfiguration", "spark-operator-webhook"]).unwrap();
        let ca_b64 = hook["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret = kget(&["secret", "spark-operator-webhook-certs", "-n", "spark"]).unwrap();
        let dir = state_dir.join("certs");
        std::fs::create_dir_all(&dir).unwrap();
        let b64 = |s: &str| {
            Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(s.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap()
                .stdout
        };
        std::fs::write(dir.join("ca.pem"), b64(&ca_b64)).unwrap();
        std::fs::write(
            dir.join("crt.pem"),
            b64(secret["data"]["tls.crt"].as_str().unwrap()),
        )
        .unwrap();
        let v = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "ca.pem",
                "-verify_hostname",
                "spark-operator-webhook.spark.svc",
                "crt.pem",
            ])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "the webhook's certificate does not verify against the configured CA: {}",
            text(&v)
        );
        assert!(
            b64(secret["data"]["tls.key"].as_str().unwrap())
                .starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
        );
        ca_b64
    };
    let first_ca = verify_webhook_chain();
    let annotation = || {
        kget(&["deployment", "spark-operator-webhook", "-n", "spark"]).unwrap()["spec"]["template"]
            ["metadata"]["annotations"]["checksum/ca"]
            .clone()
    };
    let first_annotation = annotation();
    assert!(
        first_annotation
            .as_str()
            .is_some_and(|a| a.starts_with("20")),
        "the expiry rolls the pods: {first_annotation}"
    );
    // Renewal: a certificate within its renewal window is issued again, and the
    // webhook configuration, the Secret and the pods' annotation follow.
    let p = state_dir.join("lab.state.json");
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let soon = "2020-01-01T00:00:00Z";
    st["resources"]["certificate.spark-operator-webhook"]["outputs"]["not_after"] =
        Value::String(soon.into());
    std::fs::write(&p, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    let plan = run(&["plan", "lab", "--deploy", "--output", "json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let pj = json(&plan);
    let by = |a: &str| {
        pj["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == a)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by("certificate.spark-operator-webhook")["action"],
        "replace",
        "{pj}"
    );
    assert_eq!(by("release.spark-operator")["action"], "update", "{pj}");
    let out = run(&["deploy", "lab", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second_ca = verify_webhook_chain();
    assert_ne!(first_ca, second_ca, "the CA bundle was not rotated");
    assert_ne!(
        annotation(),
        first_annotation,
        "the renewed certificate did not roll the webhook"
    );
    assert_eq!(
        run(&["plan", "lab", "--deploy"]).status.code(),
        Some(0),
        "converged after the renewal"
    );

    // workload submit: a Workflow from the template, with its parameters.
    let out = run(&[
        "workload",
        "submit",
        "lab",
        "--source",
        "https://stac.example.org/collections/x/items/S2A_TEST",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let name = json(&out)["workflow"].as_str().unwrap().to_owned();
    let wf = kget(&["workflow", &name, "-n", "geozarr"]).expect("the Workflow exists");
    assert_eq!(
        wf["spec"]["workflowTemplateRef"]["name"],
        "geozarr-pipeline"
    );
    let params = &wf["spec"]["arguments"]["parameters"];
    assert_eq!(
        params[0],
        serde_json::json!({"name": "source_url", "value": "https://stac.example.org/collections/x/items/S2A_TEST"})
    );
    assert_eq!(
        params[1],
        serde_json::json!({"name": "collection", "value": "sentinel-2-l2a"})
    );
    assert!(kget(&["workflowtemplate", "geozarr-pipeline", "-n", "geozarr"]).is_some());

    // The webhook: its pod runs this binary; POST with and without the token.
    let ready = kubectl(&[
        "rollout",
        "status",
        "-n",
        "argo",
        "deployment/argo-events-webhook-receiver",
        "--timeout=90s",
    ]);
    assert!(
        ready.status.success(),
        "receiver not ready: {}",
        text(&ready)
    );
    let svc = kget(&["service", "geozarr-webhook", "-n", "argo"]).unwrap();
    let url = format!(
        "http://{}:12000/geozarr",
        svc["spec"]["clusterIP"].as_str().unwrap()
    );
    let raw = std::fs::read_to_string(state_dir.join("lab.state.json")).unwrap();
    let mut st = provisioner::state::StateFile::from_json(raw.as_bytes(), "test").unwrap();
    st.unseal(&provisioner::state::crypto::Key::from_base64(KEY, "test".into()).unwrap())
        .unwrap();
    let token = st.resources[&provisioner::core::Address::new("secret", "argo_webhook_token")]
        .secrets["value"]
        .expose()
        .to_owned();
    let body = r#"{"source_url": "https://stac.example.org/collections/x/items/S2A_HOOK", "collection": "sentinel-2-l2a"}"#;
    let curl = |auth: Option<&str>| {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "-o",
            "/dev/stderr",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
            &url,
        ]);
        if let Some(a) = auth {
            c.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let o = c.output().unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, body_out) = curl(None);
    assert_eq!(code, "401", "no token: {body_out}");
    let (code, _) = curl(Some("not-the-token-0123456789"));
    assert_eq!(code, "401");
    let (code, answer) = curl(Some(&token));
    assert_eq!(code, "202", "with the token: {answer}");
    let hooked: Value = serde_json::from_str(&answer).unwrap();
    let wf = kget(&[
        "workflow",
        hooked["workflow"].as_str().unwrap(),
        "-n",
        "geozarr",
    ])
    .expect("the webhook's Workflow exists");
    assert_eq!(
        wf["spec"]["arguments"]["parameters"][0]["value"],
        "https://stac.example.org/collections/x/items/S2A_HOOK"
    );
    assert!(!text(&out).contains(&token), "the token was printed");

    let out = run(&["destroy", "lab", "--auto-approve", "--refresh=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for ns in ["argo", "geozarr", "stac", "spark"] {
        assert!(
            kget(&["namespace", ns]).is_none(),
            "namespace {ns} left behind"
        );
    }
}

/// `RELEASE.path.enabled=true` for every `enabled: false` in the values of the
/// charts of the data-platform stack (and what an enabled TLS ingress needs).
fn every_option(root: &Path) -> Vec<String> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    path.push(k.clone());
                    walk(x, path, out);
                    path.pop();
                }
            }
            Value::Bool(false) if path.last().map(String::as_str) == Some("enabled") => {
                out.push(format!("{}=true", path.join(".")));
                // An ingress with TLS needs a host and a certificate Secret's name.
                if path.ends_with(&["ingress".to_owned(), "tls".to_owned(), "enabled".to_owned()]) {
                    let base = path[..path.len() - 2].join(".");
                    out.push(format!("{base}.host=lab.example.org"));
                    out.push(format!("{base}.tls.secretName=lab-tls"));
                }
            }
            _ => {}
        }
    }
    let stack: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("stacks/data-platform.yaml")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for r in stack["releases"].as_array().unwrap() {
        let values: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(root.join(format!(
                "charts/{}/values.yaml",
                r["chart"].as_str().unwrap()
            )))
            .unwrap(),
        )
        .unwrap();
        let mut found = Vec::new();
        walk(&values, &mut Vec::new(), &mut found);
        out.extend(
            found
                .into_iter()
                .map(|p| format!("{}.{p}", r["name"].as_str().unwrap())),
        );
    }
    out
}
