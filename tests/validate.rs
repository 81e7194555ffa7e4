//! `provisioner validate` on the shipped environments and on a corpus of bad
//! files: each must fail with the right file:line:col and message, exit 1.

use std::process::Command;

fn provisioner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn shipped_environments_are_valid() {
    let out = provisioner()
        .args(["validate", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environment"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci-example", "lab", "production", "staging"]);
}

#[test]
fn ci_template_instantiates_with_its_name() {
    let out = provisioner()
        .args([
            "plan",
            "ci-4711",
            "--output",
            "json",
            "--refresh=false",
            "--state-dir",
            "target/test-state/ci-template",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"ci-4711-geozarr\""),
        "bucket name from ${{name}}: {text}"
    );
    assert!(!text.contains("${name}"));
    let out = provisioner().args(["validate", "nope-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("no environment `nope-1`"), "{all}");
}

/// (file, line:col, text the message must contain)
const CORPUS: &[(&str, &str, &str)] = &[
    ("unknown-key.yaml", "2:1", "unknown field `netwrok`"),
    (
        "unknown-nested.yaml",
        "4:5",
        "node_pools[1].flavour: unknown field `flavour`",
    ),
    (
        "bad-cidr.yaml",
        "3:9",
        "network.cidr: invalid IP address syntax",
    ),
    (
        "overlapping-cidr.yaml",
        "3:13",
        "10.20.0.0/16 overlaps network.cidr",
    ),
    ("even-etcd.yaml", "3:3", "2 etcd members"),
    ("no-roles.yaml", "6:12", "node pool `gpu` has no roles"),
    (
        "inline-secret.yaml",
        "3:16",
        "inline secret value is not allowed",
    ),
    (
        "inline-secret-release.yaml",
        "5:17",
        "releases.pgstac.database.password: looks like an inline secret",
    ),
    ("syntax.yaml", "4:6", "illegal placement of ':'"),
    (
        "wrong-type.yaml",
        "4:12",
        "node_pools[1].count: invalid type: string \"three\"",
    ),
    ("missing-field.yaml", "2:1", "missing field `cloud`"),
    ("bad-version.yaml", "3:23", "`1.20` is not a version"),
    ("unknown-stack.yaml", "2:25", "no stack `gpu-stack`"),
    ("bad-role.yaml", "4:13", "unknown variant `master`"),
    ("s3-backend-missing.yaml", "3:3", "needs `state.s3`"),
    (
        "bad-storage-class.yaml",
        "6:18",
        "unknown storage class `COLD`",
    ),
    (
        "bad-bucket.yaml",
        "5:16",
        "`Bad_Bucket` is not a valid bucket name",
    ),
    ("secret-two-sources.yaml", "3:10", "exactly one source"),
    ("tiny-network.yaml", "3:9", "too few for 7 servers"),
    ("cycle.yaml", "1:10", "`extends` forms a cycle"),
];

#[test]
fn bad_corpus_is_rejected_with_positions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad");
    let mut listed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut covered: Vec<String> = CORPUS.iter().map(|(f, _, _)| (*f).to_owned()).collect();
    covered.sort();
    assert_eq!(listed, covered, "every corpus file has an expectation");

    for (file, pos, text) in CORPUS {
        let path = format!("tests/corpus/bad/{file}");
        let out = provisioner()
            .args(["validate", &path, "--output", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{file} must be rejected");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors = v[0]["errors"].as_array().unwrap();
        let hit = errors.iter().any(|e| {
            let loc = e["location"].as_str().unwrap_or("");
            let msg = format!(
                "{}: {}",
                e["field"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
            (pos.is_empty() || loc == format!("{path}:{pos}")) && msg.contains(text)
        });
        assert!(hit, "{file}: expected `{text}` at {pos}, got {errors:#?}");
        // Human output names the position too, and never echoes an inline secret.
        let human = provisioner().args(["validate", &path]).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&human.stdout),
            String::from_utf8_lossy(&human.stderr)
        );
        assert!(all.contains(&format!("{path}:{pos}")), "{file}: {all}");
        assert!(!all.contains("hunter2"), "{file} echoed a secret: {all}");
    }
}

#[test]
fn schema_and_completions() {
    let out = provisioner().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let props = v["properties"].as_object().unwrap();
    for key in [
        "cloud",
        "network",
        "node_pools",
        "cluster",
        "workload",
        "state",
        "secrets",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
    assert_eq!(
        v["additionalProperties"], false,
        "unknown keys are errors in the schema too"
    );
    let out = provisioner()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("provisioner"));
}
