//! The CLI contract without a lab: plan JSON is stable (golden), exit codes
//! are 0/2/1, unimplemented layers are refused before anything changes, and
//! generated secrets are sealed in state and never printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use provisioner::state::StateFile;
use provisioner::state::crypto::Key;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, test only

fn run(args: &[&str], state_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        // As in CI: commands that change things run without a question.
        .args(
            matches!(args.first(), Some(&("up" | "destroy" | "deploy")))
                .then_some("--auto-approve"),
        )
        .arg("--state-dir")
        .arg(state_dir)
        .env("PROVISIONER_STATE_KEY", KEY)
        .env_remove("RUST_LOG")
        // No cloud here, even when the lab's OpenStack variables are exported.
        .env_remove("OS_CLOUD")
        // No cluster either, even when the kube lab exports KUBECONFIG.
        .env_remove("KUBECONFIG")
        .env("OS_CLIENT_CONFIG_FILE", "/nonexistent/clouds.yaml")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-state")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn plan_json_matches_golden() {
    // A fixed relative state dir keeps the document byte-stable.
    let dir = Path::new("target/test-state/golden");
    let _ = std::fs::remove_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    let out = run(&["plan", "ci-golden", "--output", "json"], dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/plan-ci-golden.json");
    let got = String::from_utf8(out.stdout).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        got, want,
        "plan JSON changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v["format_version"], "1");
    // Two runs give the same bytes.
    let again = run(&["plan", "ci-golden", "--output", "json"], dir);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), got);
}

#[test]
fn exit_codes_and_secret_sealing() {
    let dir = fresh_dir("exit-codes");
    let env = "ci-exitcodes";

    // Changes pending: 2.
    assert_eq!(
        run(&["plan", env, "--target", "secret"], &dir)
            .status
            .code(),
        Some(2)
    );

    // up of everything stops at the OpenStack preflight (no cloud reachable) and changes nothing.
    let refused = run(&["up", env], &dir);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("clouds.yaml"), "{}", text(&refused));
    assert!(
        !dir.join(format!("{env}.state.json")).exists(),
        "refused run wrote state"
    );

    // The implemented local layer applies; then plan says no change: 0.
    let up = run(&["up", env, "--target", "secret", "-vv"], &dir);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    assert!(text(&up).contains("3 created"), "{}", text(&up));
    assert_eq!(
        run(&["plan", env, "--target", "secret"], &dir)
            .status
            .code(),
        Some(0)
    );
    // The cloud layer is still pending: 2.
    assert_eq!(run(&["plan", env], &dir).status.code(), Some(2));
    // Errors: 1.
    assert_eq!(run(&["plan", "no-such-env"], &dir).status.code(), Some(1));

    // Secrets are sealed: decrypt with the key and make sure no value appears anywhere.
    let raw = std::fs::read_to_string(dir.join(format!("{env}.state.json"))).unwrap();
    let mut st = StateFile::from_json(raw.as_bytes(), "test").unwrap();
    st.unseal(&Key::from_base64(KEY, "test".into()).unwrap())
        .unwrap();
    let values: Vec<String> = st
        .resources
        .values()
        .flat_map(|r| r.secrets.values().map(|s| s.expose().to_owned()))
        .collect();
    assert_eq!(values.len(), 3);
    let shown = [
        text(&up),
        text(&run(&["state", "show", env], &dir)),
        text(&run(&["state", "show", env, "--output", "json"], &dir)),
        text(&run(&["plan", env, "--output", "json"], &dir)),
    ];
    for v in &values {
        assert!(v.len() >= 32);
        assert!(!raw.contains(v.as_str()), "plaintext secret in state");
        for s in &shown {
            assert!(!s.contains(v.as_str()), "secret printed: {s}");
        }
    }

    // A rerun converges without regenerating.
    let again = run(&["up", env, "--target", "secret", "--output", "json"], &dir);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let raw2 = std::fs::read_to_string(dir.join(format!("{env}.state.json"))).unwrap();
    let mut st2 = StateFile::from_json(raw2.as_bytes(), "test").unwrap();
    st2.unseal(&Key::from_base64(KEY, "test".into()).unwrap())
        .unwrap();
    let values2: Vec<String> = st2
        .resources
        .values()
        .flat_map(|r| r.secrets.values().map(|s| s.expose().to_owned()))
        .collect();
    assert_eq!(values, values2);

    // The wrong key is a clear error naming both key ids, not garbage.
    let other = Key::generate_base64();
    let wrong = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "up",
            env,
            "--target",
            "secret",
            "--auto-approve",
            "--state-dir",
        ])
        .arg(&dir)
        .env("PROVISIONER_STATE_KEY", &other)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let msg = text(&wrong);
    let want_id = Key::from_base64(KEY, "t".into()).unwrap().id;
    assert!(
        msg.contains(&want_id) && msg.contains("sealed with state key"),
        "{msg}"
    );

    // destroy of the local layer empties state.
    let d = run(&["destroy", env, "--target", "secret"], &dir);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d));
    assert_eq!(run(&["state", "list", env], &dir).stdout.len(), 0);
}

#[test]
fn s3_credentials_never_leak_into_errors_or_logs() {
    let dir = fresh_dir("leak");
    let canary_ak = "AKIACANARYLEAK0000001";
    let canary_sk = "canary/secret/do-not-print-7f3a9c";
    for args in [
        vec![
            "-vv",
            "up",
            "tests/fixtures/environments/leak.yaml",
            "--target",
            "bucket",
            "--auto-approve",
        ],
        vec![
            "--log-json",
            "-vv",
            "up",
            "tests/fixtures/environments/leak.yaml",
            "--target",
            "bucket",
            "--auto-approve",
            "--output",
            "json",
        ],
        vec![
            "plan",
            "tests/fixtures/environments/leak.yaml",
            "--output",
            "json",
        ],
        vec![
            "validate",
            "tests/fixtures/environments/leak.yaml",
            "--output",
            "json",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .arg("--state-dir")
            .arg(&dir)
            .env("CANARY_ACCESS_KEY", canary_ak)
            .env("CANARY_SECRET_KEY", canary_sk)
            .env("PROVISIONER_STATE_KEY", KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let all = text(&out);
        if args.contains(&"up") {
            // A closed endpoint is a connection failure: transient, exit 3 (retry later).
            assert_eq!(
                out.status.code(),
                Some(3),
                "the closed endpoint must fail: {all}"
            );
            assert!(
                all.contains("bucket.workload"),
                "error names the resource: {all}"
            );
        }
        assert!(
            !all.contains(canary_ak) && !all.contains(canary_sk),
            "credential leaked by {args:?}:\n{all}"
        );
    }
    for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let body = std::fs::read_to_string(f.path()).unwrap_or_default();
        assert!(
            !body.contains(canary_ak) && !body.contains(canary_sk),
            "credential in {}",
            f.path().display()
        );
    }
}
