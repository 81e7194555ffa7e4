//! Cross-field checks that types alone cannot express.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::Value;

use super::load::Problem;
use super::model::{BackendKind, Environment, Role};
use super::node::LocIndex;
use super::secret::looks_secret;

const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
    "EXPRESS_ONEZONE",
];

struct Checker<'a> {
    index: &'a LocIndex,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&self, field: &str, message: String, hint: &str) -> Problem {
        Problem {
            location: self.index.find(field).map(ToString::to_string),
            field: field.to_owned(),
            message,
            hint: (!hint.is_empty()).then(|| hint.to_owned()),
        }
    }
    fn error(&mut self, field: &str, message: impl Into<String>, hint: &str) {
        let p = self.problem(field, message.into(), hint);
        self.errors.push(p);
    }
    fn warn(&mut self, field: &str, message: impl Into<String>, hint: &str) {
        let p = self.problem(field, message.into(), hint);
        self.warnings.push(p);
    }
}

pub fn check(env: &Environment, json: &Value, index: &LocIndex) -> (Vec<Problem>, Vec<Problem>) {
    let mut c = Checker {
        index,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    check_name(&mut c, env);
    check_cidrs(&mut c, env);
    check_pools(&mut c, env);
    check_cluster(&mut c, env);
    check_stacks(&mut c, env);
    check_free_form_secrets(&mut c, json.get("releases"), "releases");
    check_s3(&mut c, env);
    check_registry(&mut c, env);
    (c.errors, c.warnings)
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_name(c: &mut Checker, env: &Environment) {
    if !dns_label(&env.name) {
        c.error(
            "name",
            format!("environment name `{}` is not a DNS label", env.name),
            "use lowercase letters, digits and `-`, at most 40 characters",
        );
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_cidrs(c: &mut Checker, env: &Environment) {
    let nets = [
        ("network.cidr", env.network.cidr),
        ("cluster.pod_cidr", env.cluster.pod_cidr),
        ("cluster.service_cidr", env.cluster.service_cidr),
    ];
    for (i, (fa, a)) in nets.iter().enumerate() {
        for (fb, b) in &nets[i + 1..] {
            if overlaps(a, b) {
                c.error(
                    fb,
                    format!("{b} overlaps {fa} ({a})"),
                    "node, pod and service ranges must be disjoint; pick another private range",
                );
            }
        }
    }
    let hosts: u64 = match env.network.cidr {
        IpNet::V4(n) => 1u64 << (32 - u32::from(n.prefix_len())),
        IpNet::V6(_) => u64::MAX,
    };
    let nodes: u64 = env
        .node_pools
        .iter()
        .map(|p| u64::from(p.count))
        .sum::<u64>()
        + u64::from(env.bastion.enabled);
    // network, broadcast, gateway and DHCP take four addresses.
    if hosts < nodes + 4 {
        c.error(
            "network.cidr",
            format!(
                "{} has {hosts} addresses, too few for {nodes} servers",
                env.network.cidr
            ),
            "use a larger prefix, e.g. /24",
        );
    }
    for (field, list) in [
        ("security.ssh_cidrs", &env.security.ssh_cidrs),
        ("security.api_cidrs", &env.security.api_cidrs),
    ] {
        for (i, n) in list.iter().enumerate() {
            if n.prefix_len() == 0 {
                c.warn(
                    &format!("{field}[{i}]"),
                    format!("{n} opens this port to the whole internet"),
                    "list the office/CI ranges instead",
                );
            }
        }
    }
}

fn check_pools(c: &mut Checker, env: &Environment) {
    let mut names = BTreeSet::new();
    for (i, p) in env.node_pools.iter().enumerate() {
        let f = format!("node_pools[{i}]");
        if !names.insert(p.name.as_str()) {
            c.error(
                &format!("{f}.name"),
                format!("node pool `{}` is declared twice", p.name),
                "pool names must be unique",
            );
        }
        if !dns_label(&p.name) {
            c.error(
                &format!("{f}.name"),
                format!("`{}` is not a DNS label", p.name),
                "servers are named after pools: use lowercase letters, digits and `-`",
            );
        }
        if p.roles.is_empty() {
            c.error(
                &format!("{f}.roles"),
                format!("node pool `{}` has no roles", p.name),
                "give it one or more of etcd, controlplane, worker",
            );
        }
        let mut vols = BTreeSet::new();
        for (j, v) in p.volumes.iter().enumerate() {
            if !vols.insert(v.name.as_str()) {
                c.error(
                    &format!("{f}.volumes[{j}].name"),
                    format!("volume `{}` is declared twice", v.name),
                    "",
                );
            }
            if v.size_gb == 0 {
                c.error(
                    &format!("{f}.volumes[{j}].size_gb"),
                    "volume size must be at least 1 GB",
                    "",
                );
            }
        }
    }
    // The cluster's nodes: the static list when there is one, else the pools.
    let statics = !env.cluster.nodes.is_empty();
    let field = if statics {
        "cluster.nodes"
    } else {
        "node_pools"
    };
    let count = |role: Role| -> u32 {
        if statics {
            return env
                .cluster
                .nodes
                .iter()
                .filter(|n| n.roles.contains(&role))
                .count() as u32;
        }
        env.node_pools
            .iter()
            .filter(|p| p.roles.contains(&role))
            .map(|p| p.count)
            .sum()
    };
    let mut names = std::collections::BTreeSet::new();
    for (i, n) in env.cluster.nodes.iter().enumerate() {
        if !names.insert(n.name.as_str()) {
            c.error(
                &format!("cluster.nodes[{i}].name"),
                format!("node `{}` is listed twice", n.name),
                "give every node its own name",
            );
        }
        let dns_label = !n.name.is_empty()
            && n.name.len() <= 63
            && n.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.name.starts_with('-')
            && !n.name.ends_with('-');
        if !dns_label {
            c.error(
                &format!("cluster.nodes[{i}].name"),
                format!("`{}` is not a valid node name", n.name),
                "use lowercase letters, digits and `-` (a DNS label)",
            );
        }
        if let Some(k) = &n.host_key
            && crate::ssh::HostKey::parse(k).is_none()
        {
            c.error(&format!("cluster.nodes[{i}].host_key"), "not an SSH public key", "give it as `TYPE BASE64`, e.g. a line of the machine's /etc/ssh/ssh_host_ed25519_key.pub");
        }
    }
    let etcd = count(Role::Etcd);
    if etcd == 0 {
        c.error(
            field,
            "no node has the etcd role",
            "give one pool (usually the control plane) the etcd role",
        );
    } else if etcd % 2 == 0 {
        let what = format!(
            "{etcd} etcd members: an even count tolerates no more failures than {} and risks split votes",
            etcd - 1
        );
        // Static machines pass through an even count while one is replaced;
        // pools declare the size the cluster is meant to have.
        if statics {
            c.warn(field, what, "use an odd number of etcd nodes (1, 3 or 5); an even count is fine while a node is being replaced");
        } else {
            c.error(field, what, "use an odd number of etcd nodes (1, 3 or 5)");
        }
    }
    if count(Role::Controlplane) == 0 {
        c.error(
            field,
            "no node has the controlplane role",
            "give one pool the controlplane role",
        );
    }
    if count(Role::Worker) == 0 {
        c.warn(
            field,
            "no node has the worker role: workloads will not be scheduled",
            "add a worker pool",
        );
    }
}

fn check_cluster(c: &mut Checker, env: &Environment) {
    let v = env.cluster.kubernetes_version.as_str();
    let ok = v.strip_prefix('v').is_some_and(|rest| {
        let parts: Vec<&str> = rest.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_digit()))
    });
    if !ok {
        c.error(
            "cluster.kubernetes_version",
            format!("`{v}` is not a version like v1.20.15"),
            "write v<major>.<minor>.<patch>",
        );
    }
    if env.cluster.etcd_snapshots.retention == 0 {
        c.error(
            "cluster.etcd_snapshots.retention",
            "retention 0 would delete every snapshot",
            "keep at least 1",
        );
    }
    if env.cluster.enabled
        && let Some(s3) = &env.cluster.etcd_snapshots.s3
        && (s3.access_key.is_none() || s3.secret_key.is_none())
    {
        c.error(
            "cluster.etcd_snapshots.s3",
            "the etcd nodes upload their snapshots themselves and need credentials",
            "add access_key and secret_key ({env: VAR} or {file: path})",
        );
    }
    if env.cluster.etcd_snapshots.interval_hours == 0 {
        c.error(
            "cluster.etcd_snapshots.interval_hours",
            "an interval of 0 hours never ends",
            "e.g. 12 (a divisor of 24 keeps the times fixed)",
        );
    }
}

fn check_stacks(c: &mut Checker, env: &Environment) {
    let stacks = crate::charts::catalog::available_stacks();
    let mut releases = BTreeSet::new();
    for (i, s) in env.stacks.iter().enumerate() {
        let Some(stack) = stacks.get(s) else {
            c.error(
                &format!("stacks[{i}]"),
                format!("no stack `{s}`"),
                &format!(
                    "known stacks: {}",
                    stacks.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        for r in &stack.releases {
            releases.insert(r.name.clone());
            for (input, source) in r.secrets.iter().filter(|(_, s)| !s.ends_with('?')) {
                if crate::plan::desired::platform::secret_source(env, source).is_none() {
                    c.error(
                        &format!("stacks[{i}]"),
                        format!("release `{}` of stack `{s}` needs secret `{input}` from `{source}`, which this environment does not define", r.name),
                        &format!("add `{source}` under `secrets:` (or set it in workload.s3) as a reference: {{env: VAR}}, {{file: path}} or {{generate: {{length: 32}}}}"),
                    );
                }
            }
        }
    }
    for name in env.releases.keys() {
        if !releases.contains(name) {
            c.error(
                &format!("releases.{name}"),
                format!("`{name}` is not a release of the selected stacks"),
                &format!(
                    "releases here: {}",
                    releases.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// Inline secrets hidden in free-form values: a secret-looking key with a scalar.
fn check_free_form_secrets(c: &mut Checker, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::Object(m)) => {
            let is_ref = m.len() == 1
                && ["env", "file", "generate"]
                    .iter()
                    .any(|k| m.contains_key(*k));
            if is_ref {
                return;
            }
            for (k, child) in m {
                let p = format!("{path}.{k}");
                if looks_secret(k) && matches!(child, Value::String(_) | Value::Number(_)) {
                    c.error(&p, "looks like an inline secret value", "secrets are references: write `{env: VAR}`, `{file: path}` or `{generate: {}}`");
                } else {
                    check_free_form_secrets(c, Some(child), &p);
                }
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_free_form_secrets(c, Some(item), &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn check_registry(c: &mut Checker, env: &Environment) {
    let built = env.workload.as_ref().and_then(|w| w.image.build_dir());
    match (&env.registry, built) {
        (None, Some(dir)) => c.error(
            "workload.image.build",
            format!("`{dir}` is built here but the environment names no registry to push it to"),
            "add `registry: {url: https://…, username: …, password: {env: VAR}}`",
        ),
        (Some(r), _) => {
            if r.url.starts_with("http://") && !r.insecure {
                c.error("registry.url", format!("`{}` is plain HTTP", r.url), "use https://, or set `registry.insecure: true` if you mean it");
            } else if !(r.url.starts_with("https://") || r.url.starts_with("http://")) {
                c.error("registry.url", format!("`{}` is not an http(s) URL", r.url), "e.g. https://registry.example.org");
            }
            if r.username.is_some() != r.password.is_some() {
                c.error("registry", "username and password go together", "set both, or neither for a registry that needs none");
            }
            if matches!(r.password, Some(crate::env::secret::SecretRef::Generate(_))) {
                c.error("registry.password", "a registry password cannot be generated here", "write `{env: VAR}` or `{file: path}`");
            }
            if !dns_label(&r.pull_secret) {
                c.error("registry.pull_secret", format!("`{}` is not a Kubernetes object name", r.pull_secret), "lowercase letters, digits and `-`");
            }
        }
        (None, None) => {}
    }
}

fn check_s3(c: &mut Checker, env: &Environment) {
    let mut locations = Vec::new();
    if let Some(w) = &env.workload {
        locations.push(("workload.s3", &w.s3));
        if !STORAGE_CLASSES.contains(&w.storage_class.as_str()) {
            c.error(
                "workload.storage_class",
                format!("unknown storage class `{}`", w.storage_class),
                &format!("one of {}", STORAGE_CLASSES.join(", ")),
            );
        }
        if !dns_label(&w.namespace) {
            c.error(
                "workload.namespace",
                format!("`{}` is not a Kubernetes namespace name", w.namespace),
                "lowercase letters, digits and `-`",
            );
        }
        for (f, url) in [
            ("workload.stac_api_url", Some(&w.stac_api_url)),
            ("workload.titiler_url", w.titiler_url.as_ref()),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                c.error(f, format!("`{u}` is not an http(s) URL"), "");
            }
        }
    }
    if let Some(s) = &env.cluster.etcd_snapshots.s3 {
        locations.push(("cluster.etcd_snapshots.s3", s));
    }
    match (env.state.backend, &env.state.s3) {
        (BackendKind::S3, None) => c.error(
            "state.s3",
            "the s3 state backend needs `state.s3` (bucket, endpoint, credentials)",
            "add state.s3 or use backend: local",
        ),
        (BackendKind::S3, Some(s)) => locations.push(("state.s3", s)),
        (BackendKind::Local, Some(_)) => c.warn(
            "state.s3",
            "ignored: the backend is local",
            "set state.backend: s3 to use it",
        ),
        _ => {}
    }
    for (f, s) in locations {
        let b = &s.bucket;
        let valid = (3..=63).contains(&b.len())
            && b.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.');
        if !valid {
            c.error(
                &format!("{f}.bucket"),
                format!("`{b}` is not a valid bucket name"),
                "3-63 lowercase letters, digits, `-` or `.`",
            );
        }
        if let Some(e) = &s.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            c.error(
                &format!("{f}.endpoint"),
                format!("`{e}` is not an http(s) URL"),
                "e.g. https://s3.example.org",
            );
        }
        if s.access_key.is_some() != s.secret_key.is_some() {
            c.error(f, "give both access_key and secret_key, or neither (then the AWS default chain is used)", "");
        }
    }
}
