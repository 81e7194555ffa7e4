//! Approval, consent for data loss and saved plans, driven through the real
//! binary: a real terminal (a pty) answers or declines the question, every
//! refusal is shown with its message and changes nothing, and saved plans are
//! applied by a second process exactly, or refused when stale or edited.
//! Offline: the local layer (generated secrets) is what gets applied.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use provisioner::state::StateFile;
use provisioner::state::crypto::Key;
use serde_json::Value;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, test only

fn bin(args: &[&str], state_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env("PROVISIONER_STATE_KEY", KEY)
        .env_remove("RUST_LOG")
        .env_remove("OS_CLOUD")
        // No cluster either, even when the kube lab exports KUBECONFIG.
        .env_remove("KUBECONFIG")
        .env("OS_CLIENT_CONFIG_FILE", "/nonexistent/clouds.yaml");
    c
}

/// Run with stdin not a terminal (a pipe with nothing in it), as in CI.
fn run(args: &[&str], state_dir: &Path) -> Output {
    bin(args, state_dir).stdin(Stdio::piped()).output().unwrap()
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
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn state_path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.state.json"))
}

/// Run with stdin, stdout and stderr on a real pseudo-terminal, typing
/// `answer` at the prompt. Returns the exit code and what the terminal showed.
fn run_on_tty(args: &[&str], state_dir: &Path, answer: &str) -> (Option<i32>, String) {
    let (mut master, slave) = openpty();
    let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut child = bin(args, state_dir)
        .stdin(dup(&slave))
        .stdout(dup(&slave))
        .stderr(dup(&slave))
        .spawn()
        .unwrap();
    drop(slave);
    // Wait for the question before answering, as a person would.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("confirm")
        && !String::from_utf8_lossy(&seen).contains("accepted")
    {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    master.write_all(format!("{answer}\n").as_bytes()).unwrap();
    // Read until the child closes the terminal (EIO on Linux once no slave is open).
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().unwrap();
    (status.code(), String::from_utf8_lossy(&seen).into_owned())
}

fn openpty() -> (std::fs::File, OwnedFd) {
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty writes two new descriptors into m and s; nothing else is passed.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned here alone.
    unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

fn secret_values(dir: &Path, env: &str) -> Vec<String> {
    let raw = std::fs::read_to_string(state_path(dir, env)).unwrap();
    let mut st = StateFile::from_json(raw.as_bytes(), "test").unwrap();
    st.unseal(&Key::from_base64(KEY, "test".into()).unwrap())
        .unwrap();
    st.resources
        .values()
        .flat_map(|r| r.secrets.values().map(|s| s.expose().to_owned()))
        .collect()
}

#[test]
fn a_terminal_answers_and_declines() {
    let dir = fresh_dir("approve-tty");
    let env = "ci-approve-tty";
    // Declined: nothing is written.
    let (code, shown) = run_on_tty(&["up", env, "--target", "secret"], &dir, "no");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("secret.cluster_token") && shown.contains("Only `yes` is accepted"),
        "the plan and the question are shown: {shown}"
    );
    assert!(shown.contains("declined"), "{shown}");
    assert!(
        !state_path(&dir, env).exists(),
        "a declined run wrote state"
    );

    // `yes` applies.
    let (code, shown) = run_on_tty(&["up", env, "--target", "secret"], &dir, "yes");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("3 created"), "{shown}");
    assert_eq!(secret_values(&dir, env).len(), 3);

    // A plan without changes asks nothing (the run would otherwise wait for the answer).
    let quiet = bin(&["up", env, "--target", "secret"], &dir)
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet));

    // destroy asks for the name: `yes` is not enough, the name is.
    let before = std::fs::read(state_path(&dir, env)).unwrap();
    let (code, shown) = run_on_tty(&["destroy", env, "--target", "secret"], &dir, "yes");
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("Type the environment's name"), "{shown}");
    assert_eq!(
        std::fs::read(state_path(&dir, env)).unwrap(),
        before,
        "declined destroy changed state"
    );
    let (code, shown) = run_on_tty(&["destroy", env, "--target", "secret"], &dir, env);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("3 deleted"), "{shown}");
}

#[test]
fn without_a_terminal_changes_need_auto_approve() {
    let dir = fresh_dir("approve-ci");
    let env = "ci-approve-ci";
    for cmd in ["up", "deploy"] {
        let out = run(&[cmd, env, "--target", "secret"], &dir);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("stdin is not a terminal") && text(&out).contains("--auto-approve"),
            "{}",
            text(&out)
        );
        assert!(!state_path(&dir, env).exists(), "refused {cmd} wrote state");
    }
    // For machines: a structured error on stdout.
    let out = run(&["up", env, "--target", "secret", "--output", "json"], &dir);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "refused");
    assert_eq!(v["error"]["details"]["refusal"], "no_terminal");
    assert_eq!(v["error"]["exit_code"], 1);

    let out = run(&["up", env, "--target", "secret", "--auto-approve"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["destroy", env, "--target", "secret"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("`destroy` changes things"),
        "{}",
        text(&out)
    );
    assert_eq!(
        secret_values(&dir, env).len(),
        3,
        "refused destroy deleted something"
    );
}

#[test]
fn data_loss_needs_consent_by_name_even_with_auto_approve() {
    let dir = fresh_dir("approve-loss");
    let env = "ci-approve-loss";
    assert_eq!(
        run(&["up", env, "--target", "secret", "--auto-approve"], &dir)
            .status
            .code(),
        Some(0)
    );
    // A volume the environment no longer declares (a pool was removed): deleting it loses data.
    let p = state_path(&dir, env);
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    st["resources"]["volume.old-data[0]"] = serde_json::json!({"kind": "volume", "id": "vol-0", "status": "ready", "attrs": {"name": "old", "size_gb": 5}, "updated_at": "2026-01-01T00:00:00Z"});
    std::fs::write(&p, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    let before = std::fs::read(&p).unwrap();

    // `--refresh=false`: the volume is not read (there is no cloud here).
    let out = run(&["up", env, "--auto-approve", "--refresh=false"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("loses data")
            && msg.contains("volume.old-data[0]")
            && msg.contains("--allow-data-loss=volume.old-data[0]"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&p).unwrap(),
        before,
        "refused run changed state"
    );

    let out = run(
        &[
            "up",
            env,
            "--auto-approve",
            "--refresh=false",
            "--output",
            "json",
        ],
        &dir,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["details"]["refusal"], "data_loss");
    assert_eq!(
        v["error"]["details"]["changes"][0]["address"],
        "volume.old-data[0]"
    );
    assert_eq!(v["error"]["details"]["changes"][0]["action"], "delete");
    // No secret in the refusal either.
    for s in secret_values(&dir, env) {
        assert!(!text(&out).contains(&s), "secret in the refusal JSON");
    }

    // Naming something else is not consent; naming it passes the gate (and the
    // run then stops at the cloud, which does not exist here, before any change).
    let out = run(
        &[
            "up",
            env,
            "--auto-approve",
            "--refresh=false",
            "--allow-data-loss",
            "server",
        ],
        &dir,
    );
    assert!(text(&out).contains("loses data"), "{}", text(&out));
    let out = run(
        &[
            "up",
            env,
            "--auto-approve",
            "--refresh=false",
            "--allow-data-loss",
            "volume.old-data",
        ],
        &dir,
    );
    assert!(!text(&out).contains("loses data"), "{}", text(&out));
    assert!(text(&out).contains("clouds.yaml"), "{}", text(&out));
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn saved_plans_apply_exactly_or_are_refused() {
    let dir = fresh_dir("approve-saved");
    let env = "ci-approve-saved";
    let plan_file = dir.join("secrets.plan.json");
    let pf = plan_file.to_str().unwrap();

    // Written by one process (exit 2: changes), applied by another without a question.
    let out = run(&["plan", env, "--target", "secret", "--out", pf], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&["up", env, "--plan", pf], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("3 created"), "{}", text(&out));
    let values = secret_values(&dir, env);
    assert_eq!(values.len(), 3);

    // Applying it again: the state moved on, so it is stale, and says why.
    let out = run(&["up", env, "--plan", pf], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("stale") && text(&out).contains("secret.cluster_token was added"),
        "{}",
        text(&out)
    );

    // A plan made, then overtaken by another run.
    let destroy_file = dir.join("destroy.plan.json");
    let df = destroy_file.to_str().unwrap();
    assert_eq!(
        run(
            &["plan", env, "--destroy", "--target", "secret", "--out", df],
            &dir
        )
        .status
        .code(),
        Some(2)
    );
    let saved = std::fs::read_to_string(&destroy_file).unwrap();
    for v in &values {
        assert!(!saved.contains(v.as_str()), "secret value in the plan file");
    }
    assert_eq!(
        run(
            &[
                "destroy",
                env,
                "--target",
                "secret.argo_webhook_token",
                "--auto-approve"
            ],
            &dir
        )
        .status
        .code(),
        Some(0)
    );
    let out = run(&["up", env, "--plan", df], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("stale")
            && text(&out).contains("secret.argo_webhook_token was removed"),
        "{}",
        text(&out)
    );

    // An edited plan file is refused, whatever was edited.
    assert_eq!(
        run(
            &["plan", env, "--destroy", "--target", "secret", "--out", df],
            &dir
        )
        .status
        .code(),
        Some(2)
    );
    let edited =
        std::fs::read_to_string(&destroy_file)
            .unwrap()
            .replacen("\"destroy\"", "\"up\"", 1);
    std::fs::write(&destroy_file, edited).unwrap();
    let out = run(&["up", env, "--plan", df], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("was edited"), "{}", text(&out));

    // A plan for another environment.
    assert_eq!(
        run(
            &["plan", env, "--destroy", "--target", "secret", "--out", df],
            &dir
        )
        .status
        .code(),
        Some(2)
    );
    let out = run(&["up", "ci-approve-other", "--plan", df], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("is a plan for environment `ci-approve-saved`"),
        "{}",
        text(&out)
    );

    // The good one: a destroy plan applies as a destroy.
    let out = run(&["up", env, "--plan", df, "--output", "json"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["operation"], "destroy");
    assert_eq!(v["report"]["deleted"].as_array().unwrap().len(), 2);
}
