//! The cluster layer over real SSH onto real machines (tests/lab/up.sh
//! cluster: systemd-nspawn machines with sshd, binaries from the lab's
//! artifact directory): 3 control-plane nodes with etcd and 2 workers become
//! a Kubernetes v1.20 cluster; pods on both workers run the lab's image and
//! reach each other and a Service; `kubectl logs/exec` work through the
//! written kubeconfig; a rerun changes nothing; a changed host key is refused
//! and an unreachable node is named before anything changes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, test only
const ENV: &str = "lab-cluster";
const NODES: [&str; 5] = ["lc-cp1", "lc-cp2", "lc-cp3", "lc-w1", "lc-w2"];

/// etcdctl on a node, as a client with the node's own certificate.
const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/ca.crt --cert=/etc/etcd/pki/server.crt --key=/etc/etcd/pki/server.key";

/// The tests share the machines: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

use common::output_text as text;

fn sh(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn nodes_sh(args: &[&str]) -> Output {
    sh(Command::new("bash")
        .arg(common::lab_var("LAB_CLUSTER_NODES_SH", "cluster"))
        .args(args))
}

/// The machines of one test and how they are reached.
struct Topology<'a> {
    /// Directory under target/test-state.
    state: &'a str,
    nodes: &'a [&'a str],
    /// Only on the isolated network, reached through the lab's bastion.
    private: bool,
    extra_nodes: &'a str,
    source: Source,
    /// Top-level YAML added to the environment.
    extra: &'a str,
    /// Lines added to `cluster.ssh`.
    ssh_extra: &'a str,
    /// Lines added to `cluster`.
    cluster_extra: &'a str,
}

/// Where the nodes get their binaries: uploaded over SSH, or downloaded by the nodes.
enum Source {
    Dir,
    Url,
}

struct Lab {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Lab {
    /// Fresh machines for `NODES`, their addresses, and an environment file naming them.
    fn new(extra_nodes: &str, source: Source) -> (Self, Vec<(String, String)>) {
        Self::create(&Topology {
            state: "lab-cluster",
            nodes: &NODES,
            private: false,
            extra_nodes,
            source,
            extra: "stacks: [lab-apps]\n",
            ssh_extra: "",
            cluster_extra: "",
        })
    }

    fn create(topo: &Topology) -> (Self, Vec<(String, String)>) {
        let (extra_nodes, source) = (topo.extra_nodes, &topo.source);
        let artifacts = match source {
            Source::Dir => format!(
                "dir: {}",
                common::lab_var("LAB_CLUSTER_ARTIFACTS", "cluster")
            ),
            Source::Url => format!(
                "url: '{}/{{name}}'",
                common::lab_var("LAB_CLUSTER_ARTIFACTS_URL", "cluster")
            ),
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-state")
            .join(topo.state);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("envs")).unwrap();
        nodes_sh(&[&["delete"][..], topo.nodes].concat());
        let how: &[&str] = if topo.private {
            &["up", "--private"]
        } else {
            &["up"]
        };
        let up = nodes_sh(&[how, topo.nodes].concat());
        assert!(up.status.success(), "nodes.sh up: {}", text(&up));
        let ips: Vec<(String, String)> = String::from_utf8_lossy(&up.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_owned(), it.next()?.to_owned()))
            })
            .filter(|(n, _)| topo.nodes.contains(&n.as_str()))
            .collect();
        assert_eq!(
            ips.len(),
            topo.nodes.len(),
            "nodes.sh up printed {}",
            text(&up)
        );
        let repo = env!("CARGO_MANIFEST_DIR");
        let kubeconfig = dir.join("admin.kubeconfig");
        let mut nodes = String::new();
        for (n, ip) in &ips {
            let roles = if n.contains("cp") {
                "[etcd, controlplane]"
            } else {
                "[worker]"
            };
            nodes.push_str(&format!(
                "    - {{name: {n}, address: {ip}, roles: {roles}}}\n"
            ));
        }
        nodes.push_str(extra_nodes);
        let env = format!(
            "extends: {repo}/tests/fixtures/environments/base.yaml
node_pools: []
bastion: {{enabled: false}}
{extra}timeouts: {{create: 300, delete: 120, request: 30, ready: 120}}
cluster:
  enabled: true
  kubernetes_version: v1.20.2
  pod_cidr: 10.244.0.0/16
  service_cidr: 10.96.0.0/16
  nodes:
{nodes}  ssh:
    user: debian
    private_key_file: {repo}/tests/fixtures/ssh/id_ed25519
{ssh_extra}  artifacts: {{{artifacts}}}
  kubeconfig: {{path: {kc}}}
  certificates: {{validity_days: 365, renew_before_days: 90}}
  node_config:
    cgroup_driver: cgroupfs
    restrict_oom_score_adj: true
    pause_image: localhost/lab/pause:1
    preload_images: [images/pause.oci.tar, images/busybox.oci.tar]
    # the host disk is the nodes' disk: evict only when it is really full (as the kube lab)
    kubelet: {{failSwapOn: false, cgroupRoot: /, evictionHard: {{memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5%, nodefs.inodesFree: 5%}}}}
{cluster_extra}",
            kc = kubeconfig.display(),
            extra = topo.extra,
            ssh_extra = topo.ssh_extra,
            cluster_extra = topo.cluster_extra,
        );
        std::fs::write(dir.join(format!("envs/{ENV}.yaml")), env).unwrap();
        (Lab { dir, kubeconfig }, ips)
    }

    /// Leave `names` out of `cluster.nodes` (none: all of them again).
    fn without(&self, names: &[&str]) {
        let f = self.dir.join(format!("envs/{ENV}.yaml"));
        let orig = self.dir.join("env.orig");
        if !orig.exists() {
            std::fs::copy(&f, &orig).unwrap();
        }
        let text: String = std::fs::read_to_string(&orig)
            .unwrap()
            .lines()
            .filter(|l| !names.iter().any(|n| l.contains(&format!("{{name: {n},"))))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&f, text).unwrap();
    }

    /// Wait until `n` nodes say Ready, through the written kubeconfig.
    fn wait_ready(&self, n: usize, secs: u64) {
        self.wait(&format!("{n} Ready nodes"), secs, || {
            let o = self.kubectl(&["get", "nodes", "--no-headers"]);
            let s = String::from_utf8_lossy(&o.stdout);
            s.lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count()
                == n
        });
    }

    /// `url` fetched from inside the client pod. busybox's `wget -T` crashes
    /// (static 1.35): the time limit comes from `timeout`.
    fn try_fetch(&self, url: &str) -> Output {
        self.kubectl(&["exec", "cli", "--", "timeout", "10", "wget", "-qO-", url])
    }

    fn fetch(&self, url: &str) -> String {
        let o = self.try_fetch(url);
        assert!(
            o.status.success(),
            "fetching {url} in the client pod: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn etcd_members(&self) -> Vec<(String, bool)> {
        let st = self.status();
        st["etcd"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_owned(),
                    m["healthy"] == true,
                )
            })
            .collect()
    }

    /// Renew certificates this many days before they expire.
    fn set_renew_before(&self, days: u32) {
        let f = self.dir.join(format!("envs/{ENV}.yaml"));
        let text = std::fs::read_to_string(&f).unwrap();
        let start = text.find("renew_before_days: ").unwrap() + "renew_before_days: ".len();
        let end = start + text[start..].find('}').unwrap();
        std::fs::write(&f, format!("{}{days}{}", &text[..start], &text[end..])).unwrap();
    }

    /// `node` is neither an etcd member nor a Node; `members` healthy members
    /// and `nodes` Nodes are left.
    fn gone_from_cluster(&self, node: &str, members: usize, nodes: usize) {
        let m = self.etcd_members();
        assert_eq!(m.len(), members, "{m:?}");
        assert!(m.iter().all(|(n, h)| *h && n != node), "{m:?}");
        let list = self.kubectl_ok(&["get", "nodes", "-o", "name"]);
        assert!(
            !list.contains(node) && list.lines().count() == nodes,
            "{list}"
        );
    }

    /// `plan` says there is nothing to change (exit 0).
    fn no_change(&self, when: &str) {
        let plan = self.run(&["plan", ENV]);
        assert_eq!(plan.status.code(), Some(0), "{when}: {}", text(&plan));
    }

    fn status(&self) -> serde_json::Value {
        let o = self.run(&["status", ENV, "--output", "json"]);
        assert!(o.status.success(), "status: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        sh(&mut self.command(args))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--environments")
            .arg(self.dir.join("envs"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["--charts", "tests/fixtures/platform"])
            .args(args)
            .env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("KUBECONFIG")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        common::kubectl(&self.kubeconfig, args)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait(&self, what: &str, secs: u64, f: impl FnMut() -> bool) {
        common::wait_until(what, secs, f)
    }
}

fn pod(name: &str, node: &str, cmd: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
        "spec": {
            "nodeName": node,
            "containers": [{ "name": "c", "image": "localhost/lab/busybox:1", "imagePullPolicy": "Never",
                             "command": ["sh", "-c", cmd], "ports": [{ "containerPort": 8080 }] }]
        }
    })
    .to_string()
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh cluster"]
fn three_control_planes_two_workers_pods_rerun_and_refusals() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (lab, ips) = Lab::new("", Source::Url);
    // A bootstrap killed mid-way (SIGKILL, no cleanup) reruns to the same result.
    let mut killed = lab.command(&["up", ENV, "--auto-approve"]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(25));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let t0 = Instant::now();
    let up = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(up.status.success(), "up: {}", text(&up));
    eprintln!(
        "bootstrap of 3 control-plane + 2 workers from reachable machines: {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Every node registers and becomes Ready, seen through the written kubeconfig.
    lab.wait_ready(5, 120);
    // etcd: three members, healthy, mutual TLS (a client without a certificate is refused).
    let etcd = nodes_sh(&[
        "exec",
        "lc-cp1",
        "sh",
        "-c",
        &format!("{ETCDCTL} endpoint health --cluster && {ETCDCTL} member list"),
    ]);
    let out = text(&etcd);
    assert!(etcd.status.success(), "{out}");
    assert_eq!(out.matches("is healthy").count(), 3, "{out}");
    assert_eq!(out.matches(", started, lc-cp").count(), 3, "{out}");
    let anon = nodes_sh(&[
        "exec",
        "lc-cp1",
        "sh",
        "-c",
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/ca.crt --command-timeout=3s member list",
    ]);
    assert!(
        !anon.status.success(),
        "etcd answered a client without a certificate: {}",
        text(&anon)
    );
    let readyz = lab.kubectl_ok(&["get", "--raw", "/readyz"]);
    assert_eq!(readyz.trim(), "ok");

    // The platform layer deployed onto this cluster in the same `up`, through the
    // kubeconfig the cluster layer wrote: the lab-apps Deployment is Available.
    let avail = lab.kubectl_ok(&[
        "-n",
        "lab-apps",
        "get",
        "deployments",
        "-o",
        "jsonpath={.items[*].status.availableReplicas}",
    ]);
    assert!(
        !avail.trim().is_empty() && avail.split_whitespace().all(|n| n != "0"),
        "lab-apps deployments: {avail}"
    );

    // Pods on each worker: a server on w2 behind a Service, a client on w1.
    let server = pod(
        "srv",
        "lc-w2",
        "echo hello-from-w2 > /tmp/index.html; httpd -f -p 8080 -h /tmp",
    );
    let client = pod("cli", "lc-w1", "echo client-started; sleep 3600");
    for p in [&server, &client] {
        let f = lab.dir.join("pod.json");
        std::fs::write(&f, p).unwrap();
        lab.kubectl_ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    lab.kubectl_ok(&[
        "expose",
        "pod",
        "srv",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--name",
        "srv",
    ]);
    lab.wait("pods Running", 120, || {
        let s = lab.kubectl_ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
        s.split_whitespace().filter(|p| *p == "Running").count() == 2
    });
    let srv_ip = lab.kubectl_ok(&["get", "pod", "srv", "-o", "jsonpath={.status.podIP}"]);
    let svc_ip = lab.kubectl_ok(&["get", "service", "srv", "-o", "jsonpath={.spec.clusterIP}"]);
    let via_pod = lab.fetch(&format!("http://{srv_ip}:8080/index.html"));
    assert_eq!(via_pod.trim(), "hello-from-w2", "pod to pod across workers");
    let via_svc = lab.fetch(&format!("http://{svc_ip}/index.html"));
    assert_eq!(
        via_svc.trim(),
        "hello-from-w2",
        "pod to a Service's cluster IP"
    );
    let logs = lab.kubectl_ok(&["logs", "cli"]);
    assert!(logs.contains("client-started"), "{logs}");

    // A rerun connects, checks and changes nothing.
    let t1 = Instant::now();
    let plan = lab.run(&["plan", ENV]);
    eprintln!(
        "no-op plan (refresh over SSH of 5 nodes): {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    assert_eq!(
        plan.status.code(),
        Some(0),
        "a rerun would change something: {}",
        text(&plan)
    );
    let again = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(again.status.success(), "{}", text(&again));
    let restarts = nodes_sh(&[
        "exec",
        "lc-cp1",
        "systemctl",
        "show",
        "-p",
        "NRestarts",
        "kube-apiserver",
    ]);
    assert!(
        text(&restarts).contains("NRestarts=0"),
        "{}",
        text(&restarts)
    );

    // Status: every node Ready, three healthy etcd members, each API server ready,
    // every certificate with its expiry (about a year away).
    let st = lab.status();
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5, "{st}");
    assert!(
        nodes
            .iter()
            .all(|n| n["ready"] == true && n["kubelet"] == "v1.20.2"),
        "{st}"
    );
    let members = st["etcd"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{st}");
    assert!(members.iter().all(|m| m["healthy"] == true), "{st}");
    assert!(
        st["control_plane"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["readyz"] == "ok"),
        "{st}"
    );
    let expiry = |st: &serde_json::Value, res: &str, cert: &str| -> String {
        st["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["resource"] == res && c["certificate"] == cert)
            .unwrap_or_else(|| panic!("no certificate {cert} of {res} in {st}"))["not_after"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = expiry(&st, "control_plane.lc-cp1", "apiserver");
    let days = st["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["days_left"].as_i64().unwrap())
        .min()
        .unwrap();
    assert!((360..=365).contains(&days), "{st}");

    // Renewal: within the window (here: a window wider than the validity), up
    // issues the leaves again; with the window back, nothing is due: idempotent.
    lab.set_renew_before(400);
    let due = lab.run(&["plan", ENV]);
    assert_eq!(due.status.code(), Some(2), "{}", text(&due));
    assert!(text(&due).contains("renewal due"), "{}", text(&due));
    std::thread::sleep(Duration::from_secs(1)); // a later not_after, to the second
    let renew = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(renew.status.success(), "{}", text(&renew));
    lab.set_renew_before(90);
    lab.no_change("after the renewal window is back to 90 days");
    let after = expiry(&lab.status(), "control_plane.lc-cp1", "apiserver");
    assert!(
        after > before,
        "apiserver certificate not renewed: {before} then {after}"
    );
    lab.kubectl_ok(&["get", "--raw", "/readyz"]);

    // Machines rebooted from inside come back with every service: a worker (its
    // routes and pods) and a control-plane node (etcd rejoins).
    for n in ["lc-w1", "lc-cp2"] {
        let r = nodes_sh(&["reboot", n]);
        assert!(r.status.success(), "{}", text(&r));
    }
    lab.wait_ready(5, 180);
    lab.wait("the client pod running again", 180, || {
        let o = lab.try_fetch(&format!("http://{svc_ip}/index.html"));
        String::from_utf8_lossy(&o.stdout).trim() == "hello-from-w2"
    });
    lab.wait("etcd healthy after the reboot", 120, || {
        let o = nodes_sh(&[
            "exec",
            "lc-cp2",
            "sh",
            "-c",
            &format!("{ETCDCTL} endpoint health --cluster"),
        ]);
        text(&o).matches("is healthy").count() == 3
    });
    lab.no_change("after reboots");

    // A machine that presents another host key is refused, naming what to do.
    let w2 = &ips.iter().find(|(n, _)| n == "lc-w2").unwrap().1;
    let rekey = nodes_sh(&[
        "exec",
        "lc-w2",
        "sh",
        "-c",
        "mkdir -p /root/keys && cp -a /etc/ssh/ssh_host_* /root/keys/ && rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh",
    ]);
    assert!(rekey.status.success(), "{}", text(&rekey));
    let refused = lab.run(&["plan", ENV]);
    let msg = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("host key changed")
            && msg.contains(w2.as_str())
            && msg.contains("state rm host.lc-w2"),
        "{msg}"
    );
    nodes_sh(&[
        "exec",
        "lc-w2",
        "sh",
        "-c",
        "cp -a /root/keys/* /etc/ssh/ && systemctl restart ssh",
    ]);
    lab.no_change("the host key restored");

    // Day 2. Removing two etcd members in one run is refused before anything changes.
    // (etcd members hold data: consent is needed first, and then quorum still says no.)
    lab.without(&["lc-cp2", "lc-cp3"]);
    let refused = lab.run(&["up", ENV, "--auto-approve", "--allow-data-loss=all"]);
    let msg = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{msg}");
    assert!(msg.contains("removes 2 etcd members at once"), "{msg}");
    assert_eq!(lab.etcd_members().len(), 3, "the refused plan changed etcd");
    // Removing one control-plane node: drained, its member removed, the rest healthy.
    lab.without(&["lc-cp3"]);
    let plan = lab.run(&["plan", ENV]);
    let shown = text(&plan);
    for step in ["kubelet.lc-cp3", "control_plane.lc-cp3", "etcd.lc-cp3"] {
        assert!(
            shown.contains(step),
            "the plan does not show {step}: {shown}"
        );
    }
    let removed = lab.run(&["up", ENV, "--auto-approve", "--allow-data-loss=etcd.lc-cp3"]);
    assert!(removed.status.success(), "{}", text(&removed));
    lab.gone_from_cluster("lc-cp3", 2, 4);
    assert_eq!(lab.run(&["plan", ENV]).status.code(), Some(0));
    // Adding it back on a fresh machine: `member add`, then the control plane on it.
    nodes_sh(&["delete", "lc-cp3"]);
    assert!(nodes_sh(&["up", "lc-cp3"]).status.success());
    lab.without(&[]);
    let added = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(added.status.success(), "{}", text(&added));
    let members = lab.etcd_members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|(_, h)| *h), "{members:?}");
    lab.wait_ready(5, 120);
    // The workers kept their pod ranges: the server pod still answers at its address.
    let still = lab.fetch(&format!("http://{srv_ip}:8080/index.html"));
    assert_eq!(still.trim(), "hello-from-w2");

    // A failed node is replaced the same way: its machine is gone, so its
    // member leaves through another member and its Node object is deleted.
    nodes_sh(&["delete", "lc-cp2"]);
    lab.without(&["lc-cp2"]);
    let plan = lab.run(&["plan", ENV]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let replaced = lab.run(&["up", ENV, "--auto-approve", "--allow-data-loss=etcd.lc-cp2"]);
    assert!(replaced.status.success(), "{}", text(&replaced));
    assert!(
        text(&replaced).contains("does not answer"),
        "{}",
        text(&replaced)
    );
    lab.gone_from_cluster("lc-cp2", 2, 4);
    lab.no_change("after a failed node was removed");
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh cluster"]
fn an_unreachable_node_is_named_before_anything_changes() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let gone = "    - {name: lc-gone, address: 10.236.0.250, roles: [worker]}\n";
    let (lab, _) = Lab::new(gone, Source::Dir);
    let up = lab.run(&["up", ENV, "--auto-approve"]);
    let msg = text(&up);
    assert!(!up.status.success(), "{msg}");
    assert!(
        msg.contains("lc-gone")
            && msg.contains("10.236.0.250")
            && msg.contains("TCP to 10.236.0.250:22"),
        "{msg}"
    );
    assert!(msg.contains("nothing was changed"), "{msg}");
    // Nothing was installed on the reachable machines.
    let o = nodes_sh(&[
        "exec",
        "lc-cp1",
        "sh",
        "-c",
        "ls /usr/local/bin/etcd /etc/sysctl.d/90-provisioner.conf 2>&1 || true",
    ]);
    assert!(text(&o).contains("No such file"), "{}", text(&o));
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh cluster"]
fn a_cluster_reachable_only_through_the_bastion() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bastion = common::lab_var("LAB_CLUSTER_BASTION", "cluster");
    // The bastion's host key, pinned in the environment as a user would.
    let known = std::fs::read_to_string(common::lab_var(
        "LAB_CLUSTER_BASTION_KNOWN_HOSTS",
        "cluster",
    ))
    .unwrap();
    let key: Vec<&str> = known
        .lines()
        .find(|l| l.contains("ssh-ed25519"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    let ssh_extra = format!(
        "    bastion: {{address: {bastion}, user: debian, host_key: '{}'}}\n",
        key.join(" ")
    );
    let (lab, ips) = Lab::create(&Topology {
        state: "lab-cluster-private",
        nodes: &["lp-cp1", "lp-w1"],
        private: true,
        extra_nodes: "",
        // Uploads from this machine, through the bastion's tunnel.
        source: Source::Dir,
        // The platform layer reaches the private API through a forwarded port.
        extra: "stacks: [lab-apps]\n",
        ssh_extra: &ssh_extra,
        cluster_extra: "",
    });
    assert!(
        ips.iter().all(|(_, ip)| ip.starts_with("10.237.")),
        "{ips:?}"
    );
    let t0 = Instant::now();
    let up = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(up.status.success(), "up: {}", text(&up));
    eprintln!(
        "bootstrap of 1 control-plane + 1 worker through the bastion, binaries uploaded through it: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    lab.wait("2 Ready nodes, seen through the bastion", 120, || {
        let st = lab.status();
        st["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["ready"] == true))
    });
    let st = lab.status();
    assert!(st["etcd"]["members"][0]["healthy"] == true, "{st}");
    assert_eq!(st["control_plane"][0]["readyz"], "ok", "{st}");
    lab.no_change("the private cluster, rerun");
    // The API has no route from here: `up` deployed the releases, and
    // `deploy` and `releases` reach it, through the bastion.
    let kc = std::fs::read_to_string(&lab.kubeconfig).unwrap();
    assert!(
        kc.contains("provisioner.dev/bastion") && kc.contains(&bastion),
        "{kc}"
    );
    let direct = lab.kubectl(&["get", "nodes", "--request-timeout=5s"]);
    assert!(
        !direct.status.success(),
        "the private API answered directly: {}",
        text(&direct)
    );
    let deploy = lab.run(&["deploy", ENV, "--auto-approve"]);
    assert!(
        deploy.status.success(),
        "deploy through the bastion: {}",
        text(&deploy)
    );
    assert!(
        text(&deploy).contains("0 created") && text(&deploy).contains("0 updated"),
        "{}",
        text(&deploy)
    );
    let rel = lab.run(&["releases", ENV, "--output", "json"]);
    assert!(rel.status.success(), "releases: {}", text(&rel));
    let rel: serde_json::Value = serde_json::from_slice(&rel.stdout).unwrap();
    let deployed = rel.as_array().map_or(0, |a| {
        a.iter()
            .filter(|r| r["history"].as_array().is_some_and(|h| !h.is_empty()))
            .count()
    });
    assert!(
        deployed > 0,
        "history read from the cluster through the bastion: {rel}"
    );
    nodes_sh(&["delete", "lp-cp1", "lp-w1"]);
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh s3s cluster"]
fn etcd_snapshots_on_schedule_and_on_demand_then_restore_onto_fresh_nodes() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s3 = common::lab_var("LAB_CLUSTER_S3_URL", "cluster");
    common::lab_var("S3S_ACCESS_KEY", "s3s");
    // An empty bucket (s3s-fs keeps one per directory; it has no tagging, so
    // the environment cannot own it and uses it as an existing one).
    let bucket = "lab-cluster-etcd";
    let dir = Path::new(&common::lab_var("S3S_DATA_DIR", "s3s")).join(bucket);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cluster_extra = format!(
        "  etcd_snapshots:
    interval_hours: 12
    retention: 2
    s3: {{bucket: {bucket}, prefix: lab/etcd, endpoint: '{s3}', path_style: true,
          access_key: {{env: S3S_ACCESS_KEY}}, secret_key: {{env: S3S_SECRET_KEY}}}}
"
    );
    let fresh = ["lr-cp2", "lr-cp3", "lr-cp4"];
    let (lab, _) = Lab::create(&Topology {
        state: "lab-cluster-restore",
        nodes: &["lr-cp1", "lr-cp2", "lr-cp3", "lr-cp4"],
        private: false,
        extra_nodes: "",
        source: Source::Url,
        extra: "stacks: []\n",
        ssh_extra: "",
        cluster_extra: &cluster_extra,
    });
    // The cluster that will be lost: one control-plane node.
    lab.without(&fresh);
    let up = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(up.status.success(), "up: {}", text(&up));
    lab.wait_ready(1, 120);

    // The schedule: a timer every 12 h, running the script that keeps 2.
    let timer = nodes_sh(&[
        "exec",
        "lr-cp1",
        "sh",
        "-c",
        "systemctl is-active etcd-snapshot.timer && systemctl show -p TimersCalendar etcd-snapshot.timer",
    ]);
    assert!(
        text(&timer).contains("active") && text(&timer).contains("00/12:00:00"),
        "{}",
        text(&timer)
    );
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "before-snapshot",
        "--from-literal=k=v",
    ]);
    for _ in 0..3 {
        // What the timer starts; names have one-second resolution.
        let o = nodes_sh(&[
            "exec",
            "lr-cp1",
            "systemctl",
            "start",
            "etcd-snapshot.service",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        std::thread::sleep(Duration::from_millis(1100));
    }
    let on_demand = lab.run(&["etcd", "snapshot", ENV, "--output", "json"]);
    assert!(
        on_demand.status.success(),
        "etcd snapshot: {}",
        text(&on_demand)
    );
    let taken: serde_json::Value = serde_json::from_slice(&on_demand.stdout).unwrap();
    let name = taken["name"].as_str().unwrap().to_owned();
    assert!(
        name.starts_with("etcd-lr-cp1-") && name.ends_with("-on-demand.db"),
        "{taken}"
    );
    assert_eq!(
        taken["url"].as_str().unwrap(),
        format!("{s3}/{bucket}/lab/etcd/{name}"),
        "{taken}"
    );
    // Retention 2, on the node and in the bucket: the newest scheduled one and this one.
    let list = lab.run(&["etcd", "snapshots", ENV, "--output", "json"]);
    assert!(list.status.success(), "etcd snapshots: {}", text(&list));
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let in_bucket = names(&list["bucket"]["snapshots"]);
    let on_node = names(&list["nodes"]["lr-cp1"]);
    assert_eq!(in_bucket.len(), 2, "{list}");
    assert_eq!(in_bucket, on_node, "{list}");
    assert!(
        in_bucket.contains(&name) && in_bucket.iter().any(|n| n.ends_with("-scheduled.db")),
        "{list}"
    );
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "after-snapshot",
        "--from-literal=k=v",
    ]);

    // The machine is lost; the environment names fresh nodes instead.
    nodes_sh(&["delete", "lr-cp1"]);
    lab.without(&["lr-cp1"]);
    let plan = lab.run(&["plan", ENV]);
    assert_eq!(plan.status.code(), Some(2), "plan: {}", text(&plan));
    // The lost machine does not answer: its steps are planned away, not an error.
    assert!(text(&plan).contains("- etcd.lr-cp1"), "{}", text(&plan));
    let t0 = Instant::now();
    let up = lab.run(&["up", ENV, "--auto-approve", "--allow-data-loss=etcd.lr-cp1"]);
    assert!(up.status.success(), "up onto fresh nodes: {}", text(&up));
    eprintln!(
        "fresh 3-node cluster, the lost node's steps removed: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    lab.wait_ready(3, 120);
    let gone = lab.kubectl(&["get", "configmap", "before-snapshot"]);
    assert!(
        !gone.status.success(),
        "a fresh cluster has none of the old objects"
    );

    // Restore needs consent: it replaces the members' data.
    let refused = lab.run(&[
        "etcd",
        "restore",
        ENV,
        "--snapshot",
        &name,
        "--auto-approve",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("--allow-data-loss"),
        "{}",
        text(&refused)
    );
    let t0 = Instant::now();
    let restored = lab.run(&[
        "etcd",
        "restore",
        ENV,
        "--snapshot",
        &name,
        "--auto-approve",
        "--allow-data-loss=etcd",
        "--output",
        "json",
    ]);
    assert!(
        restored.status.success(),
        "etcd restore: {}",
        text(&restored)
    );
    eprintln!(
        "restore onto 3 fresh members, every node Ready again: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let r: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(r["removed_nodes"], serde_json::json!(["lr-cp1"]), "{r}");

    // The objects of snapshot time, and only those.
    lab.kubectl_ok(&["get", "configmap", "before-snapshot"]);
    let after = lab.kubectl(&["get", "configmap", "after-snapshot"]);
    assert!(!after.status.success(), "{}", text(&after));
    lab.wait_ready(3, 120);
    let members = lab.etcd_members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members
            .iter()
            .all(|(n, ok)| *ok && fresh.contains(&n.as_str())),
        "{members:?}"
    );
    // Converged: nothing left to change.
    lab.no_change("after the restore");

    // `certs rotate`: every leaf certificate again, the CAs kept; then new CAs.
    let sums = || {
        let o = nodes_sh(&[
            "exec",
            "lr-cp2",
            "sha256sum",
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/pki/ca.crt",
            "/etc/etcd/pki/peer.crt",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let before = sums();
    let t0 = Instant::now();
    let rot = lab.run(&["certs", "rotate", ENV, "--auto-approve"]);
    assert!(rot.status.success(), "certs rotate: {}", text(&rot));
    eprintln!(
        "certs rotate (3 nodes): {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let after = sums();
    assert!(
        after[0] != before[0] && after[2] != before[2],
        "leaves renewed: {before:?} {after:?}"
    );
    assert_eq!(after[1], before[1], "the CA is kept");
    lab.wait_ready(3, 120);
    lab.no_change("after a rotation");
    let t0 = Instant::now();
    let rot = lab.run(&["certs", "rotate", ENV, "--ca", "--auto-approve"]);
    assert!(rot.status.success(), "certs rotate --ca: {}", text(&rot));
    eprintln!(
        "certs rotate --ca (3 nodes): {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let with_ca = sums();
    assert!(
        with_ca.iter().zip(&after).all(|(a, b)| a != b),
        "{after:?} {with_ca:?}"
    );
    // Through the rewritten kubeconfig: every node back, the objects kept.
    lab.wait_ready(3, 180);
    lab.kubectl_ok(&["get", "configmap", "before-snapshot"]);
    let members = lab.etcd_members();
    assert!(
        members.len() == 3 && members.iter().all(|(_, ok)| *ok),
        "{members:?}"
    );
    lab.no_change("after a CA rotation");
    nodes_sh(&[&["delete"][..], &fresh].concat());
}
