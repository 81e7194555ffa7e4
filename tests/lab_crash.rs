//! Crash recovery with real SIGKILLs: `up` and `destroy` are killed at chosen
//! points of the walk (intent saved; resource created but not recorded;
//! delete started), and each rerun converges with no duplicate and no orphan,
//! counted through the S3 API by ownership tag. Also: lock contention between
//! two CLI runs, state rebuild, and destroy sweeping what state forgot.
//! Run with the lab: `bash tests/run.sh` (or `tests/lab/up.sh s3`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // test only

struct Lab {
    env: String,
    state_dir: PathBuf,
}

impl Lab {
    fn new() -> Self {
        common::lab_var("S3_ENDPOINT_URL", "s3");
        let env = common::unique("labs3").replace('_', "-");
        let state_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-state")
            .join(&env);
        Lab { env, state_dir }
    }

    fn cmd(&self, args: &[&str], delay_ms: u64) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--environments")
            .arg("tests/fixtures/environments")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            // As in CI: the plan is applied without a question.
            .args(matches!(args.first(), Some(&("up" | "destroy"))).then_some("--auto-approve"))
            .env("PROVISIONER_STATE_KEY", KEY)
            .env("PROVISIONER_APPLY_DELAY_MS", delay_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.insert(1, &self.env);
        self.cmd(&full, 0).output().unwrap()
    }

    fn spawn(&self, args: &[&str], delay_ms: u64) -> Child {
        let mut full: Vec<&str> = args.to_vec();
        full.insert(1, &self.env);
        self.cmd(&full, delay_ms).spawn().unwrap()
    }

    fn state(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state_dir.join(format!("{}.state.json", self.env)))
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    fn status(&self, addr: &str) -> Option<String> {
        self.state()?
            .get("resources")?
            .get(addr)?
            .get("status")?
            .as_str()
            .map(str::to_owned)
    }

    /// SIGKILL `child` as soon as `cond` holds (it must hold within 60 s).
    fn kill_when(&self, mut child: Child, what: &str, cond: impl Fn() -> bool) {
        let t = Instant::now();
        while !cond() {
            if let Ok(Some(status)) = child.try_wait() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "run ended ({status}) before `{what}`: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "`{what}` never happened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL: no cleanup, no lock release, no final save
        child.wait().unwrap();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn s3() -> aws_sdk_s3::Client {
    let (_, loc) = common::s3_servers_moto();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    provisioner::s3::client(&loc, "test").await.unwrap()
}

/// Buckets in the S3 server tagged as owned by `env`.
async fn owned_buckets(c: &aws_sdk_s3::Client, env: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in c.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap_or_default();
        if let Ok(t) = c.get_bucket_tagging().bucket(name).send().await
            && t.tag_set()
                .iter()
                .any(|t| t.key() == "provisioner:environment" && t.value() == env)
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    out
}

async fn bucket_exists(c: &aws_sdk_s3::Client, name: &str) -> bool {
    c.head_bucket().bucket(name).send().await.is_ok()
}

const TARGETS: &[&str] = &["--target", "secret", "--target", "bucket"];

fn up_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["up"];
    v.extend_from_slice(TARGETS);
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "lab: needs tests/lab/up.sh s3"]
async fn killed_up_and_destroy_converge_without_duplicates_or_orphans() {
    let lab = Lab::new();
    let c = s3().await;
    let output_bucket = format!("{}-output", lab.env);
    let want_buckets = vec![format!("{}-etcd", lab.env), output_bucket.clone()];

    // Kill 0: the output bucket exists but state only says `creating`; `destroy`
    // (no `up` in between) must still find it by its tags and delete it.
    let child = lab.spawn(&up_args(&[]), 700);
    let rt0 = tokio::runtime::Handle::current();
    let (probe0, name0) = (c.clone(), output_bucket.clone());
    lab.kill_when(
        child,
        "bucket created, not yet recorded (before destroy)",
        || {
            let (p, n, rt) = (probe0.clone(), name0.clone(), rt0.clone());
            lab.status("bucket.workload").as_deref() == Some("creating")
                && std::thread::spawn(move || rt.block_on(bucket_exists(&p, &n)))
                    .join()
                    .unwrap()
        },
    );
    let out = lab.run(&["destroy", "--target", "bucket"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        owned_buckets(&c, &lab.env).await.is_empty(),
        "destroy after a crash left {:?}",
        owned_buckets(&c, &lab.env).await
    );

    // Kill 1: right after the first intent is saved, before anything exists.
    let child = lab.spawn(&up_args(&[]), 400);
    lab.kill_when(child, "a create is in progress", || {
        lab.state()
            .and_then(|s| {
                s["resources"]
                    .as_object()
                    .map(|r| r.values().any(|v| v["status"] == "creating"))
            })
            .unwrap_or(false)
    });

    // Kill 2: the output bucket exists in S3 but state still says `creating`.
    let child = lab.spawn(&up_args(&[]), 700);
    let rt = tokio::runtime::Handle::current();
    let probe = c.clone();
    let name = output_bucket.clone();
    let exists = move || {
        let (probe, name, rt) = (probe.clone(), name.clone(), rt.clone());
        std::thread::spawn(move || rt.block_on(bucket_exists(&probe, &name)))
            .join()
            .unwrap()
    };
    lab.kill_when(child, "bucket created, not yet recorded", || {
        lab.status("bucket.workload").as_deref() == Some("creating") && exists()
    });
    assert_eq!(lab.status("bucket.workload").as_deref(), Some("creating"));

    // The rerun adopts the bucket it finds (owned by tag) instead of failing or duplicating.
    let out = lab.run(&up_args(&["--output", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let adopted: Vec<&str> = report["report"]["adopted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(adopted.contains(&"bucket.workload"), "adopted: {report}");
    assert_eq!(
        owned_buckets(&c, &lab.env).await,
        want_buckets,
        "exactly the two owned buckets, no duplicate, no orphan"
    );

    // Converged: plan shows no change (read calls only) and another up changes nothing.
    let plan = lab.run(&["plan", "--target", "secret", "--target", "bucket"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let again = lab.run(&up_args(&["--output", "json"]));
    let r: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(r["summary"]["create"], 0, "{r}");
    let state = lab.state().unwrap();
    let secrets = state["resources"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("secret."))
        .count();
    assert_eq!(secrets, 6, "three base + three fixture secrets");

    // A second run while one holds the lock is refused, naming the holder.
    let holder = lab.spawn(&["destroy", "--target", "bucket"], 1500);
    let t = Instant::now();
    while !lab.state_dir.join(format!("{}.lock", lab.env)).exists() {
        assert!(t.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    let blocked = lab.run(&up_args(&[]));
    // Exit 5: another run holds the lock.
    assert_eq!(blocked.status.code(), Some(5));
    assert!(text(&blocked).contains("locked by"), "{}", text(&blocked));

    // Kill 3: destroy killed after marking a bucket `deleting`.
    lab.kill_when(holder, "delete in progress", || {
        lab.state()
            .and_then(|s| {
                s["resources"]
                    .as_object()
                    .map(|r| r.values().any(|v| v["status"] == "deleting"))
            })
            .unwrap_or(false)
    });
    // The dead run's lock is taken over (same host, pid gone) and destroy finishes.
    let out = lab.run(&["destroy", "--target", "bucket"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        owned_buckets(&c, &lab.env).await.is_empty(),
        "destroy left tagged buckets"
    );

    // Lost state: up again, delete the state file, then rebuild it from tags.
    assert_eq!(lab.run(&up_args(&[])).status.code(), Some(0));
    std::fs::remove_file(lab.state_dir.join(format!("{}.state.json", lab.env))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--environments",
            "tests/fixtures/environments",
            "--state-dir",
        ])
        .arg(&lab.state_dir)
        .args([
            "state", "rebuild", &lab.env, "--target", "bucket", "--output", "json",
        ])
        .env("PROVISIONER_STATE_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["rebuilt"],
        serde_json::json!(["bucket.etcd_snapshots", "bucket.workload"])
    );
    let plan = lab.run(&["plan", "--target", "bucket"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "rebuilt state matches: {}",
        text(&plan)
    );

    // Lost state again: destroy sweeps the tagged buckets it finds.
    std::fs::remove_file(lab.state_dir.join(format!("{}.state.json", lab.env))).unwrap();
    let out = lab.run(&["destroy", "--target", "bucket"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        owned_buckets(&c, &lab.env).await.is_empty(),
        "sweep left tagged buckets"
    );
}
