//! The cluster layer on the servers the cloud layer creates, in one `up`
//! (tests/lab/up.sh s3 openstack cluster): the lab cloud's servers are real
//! machines; the nodes are reached through the bastion's floating IP, their
//! addresses come from the servers' outputs, the binaries are uploaded through
//! the bastion, the ports admit the pod range (allowed address pairs), the
//! platform layer deploys through a port forwarded by the bastion (CoreDNS at
//! the address the kubelets give pods, and the data platform); a pod runs
//! on the worker; a rerun plans nothing; `destroy` removes everything, the
//! node steps first.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // state key, test only
const ENV: &str = "lab-cc";

use common::output_text as text;

struct Lab {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Lab {
    fn new() -> Self {
        common::lab_var("OS_CLIENT_CONFIG_FILE", "openstack");
        common::lab_var("S3_ENDPOINT_URL", "s3");
        let artifacts = common::lab_var("LAB_CLUSTER_ARTIFACTS", "cluster");
        let repo = env!("CARGO_MANIFEST_DIR");
        let dir = Path::new(repo)
            .join("target/test-state")
            .join(common::unique("lab-cc"));
        std::fs::create_dir_all(dir.join("envs")).unwrap();
        let kubeconfig = dir.join("admin.kubeconfig");
        // The lab environment, with the cluster layer on (lab.yaml leaves it off),
        // on a network of its own.
        let env = format!(
            "extends: {repo}/environments/lab.yaml
network: {{cidr: 10.77.30.0/24}}
stacks: [cluster-addons, data-platform]
cluster:
  enabled: true
  kubernetes_version: v1.20.2
  pod_cidr: 10.245.0.0/16
  service_cidr: 10.97.0.0/16
  ssh: {{private_key_file: {repo}/tests/fixtures/ssh/id_ed25519}}
  artifacts: {{dir: {artifacts}}}
  kubeconfig: {{path: {kc}}}
  node_config:
    cgroup_driver: cgroupfs
    restrict_oom_score_adj: true
    pause_image: localhost/lab/pause:1
    preload_images: [images/pause.oci.tar, images/busybox.oci.tar]
    # the host disk is the nodes' disk: evict only when it is really full (as the kube lab)
    kubelet: {{failSwapOn: false, cgroupRoot: /, evictionHard: {{memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5%, nodefs.inodesFree: 5%}}}}
",
            kc = kubeconfig.display()
        );
        std::fs::write(dir.join(format!("envs/{ENV}.yaml")), env).unwrap();
        Lab { dir, kubeconfig }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--environments")
            .arg(self.dir.join("envs"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(args)
            .env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("KUBECONFIG")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        common::kubectl(&self.kubeconfig, args)
    }

    fn wait(&self, what: &str, secs: u64, f: impl FnMut() -> bool) {
        common::wait_until(what, secs, f)
    }

    fn state(&self) -> serde_json::Value {
        let f = self.dir.join(format!("state/{ENV}.state.json"));
        serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever happened, the servers go (they are real machines).
        if self.dir.join(format!("state/{ENV}.state.json")).exists() {
            let _ = self.run(&["destroy", ENV, "--auto-approve"]);
        }
    }
}


#[test]
#[ignore = "lab: needs tests/lab/up.sh s3 openstack cluster"]
fn up_bootstraps_kubernetes_on_the_servers_it_creates() {
    let lab = Lab::new();
    let t0 = Instant::now();
    let up = lab.run(&["up", ENV, "--auto-approve"]);
    assert!(up.status.success(), "up: {}", text(&up));
    eprintln!(
        "up: servers, then Kubernetes on them, then the platform layer: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let st = lab.state();
    let res = &st["resources"];
    for a in [
        "server.control[0]",
        "etcd.lab-cc-control-0",
        "control_plane.lab-cc-control-0",
        "kubelet.lab-cc-worker-0",
        "kubeconfig.admin",
        "release.stac-api",
    ] {
        assert_eq!(res[a]["status"], "ready", "{a}: {}", res[a]);
    }
    // The nodes were reached through the bastion, by their servers' addresses.
    let node = &res["etcd.lab-cc-control-0"]["attrs"]["node"];
    assert_eq!(node["address"]["ref"], "server.control[0]", "{node}");
    assert_eq!(
        node["via"]["address"]["ref"], "floating_ip.bastion[0]",
        "{node}"
    );
    let kc = std::fs::read_to_string(&lab.kubeconfig).unwrap();
    assert!(kc.contains("provisioner.dev/bastion"), "{kc}");

    // The host reaches the lab subnet: kubectl straight to the API server.
    lab.wait("2 Ready nodes", 180, || {
        let o = lab.kubectl(&["get", "nodes", "--no-headers"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count()
            == 2
    });
    // Port security admits the pod range on every node's port.
    let worker = res["server.worker[0]"]["id"].as_str().unwrap();
    let ports = common::openstack_json(&["port", "list", "--device-id", worker]);
    let port = common::openstack_json(&["port", "show", ports[0]["ID"].as_str().unwrap()]);
    let pairs = port["allowed_address_pairs"].to_string();
    assert!(pairs.contains("10.245.0.0/16"), "{port}");

    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "hello", "namespace": "default" },
        "spec": {
            "nodeName": "lab-cc-worker-0",
            "containers": [{ "name": "c", "image": "localhost/lab/busybox:1", "imagePullPolicy": "Never",
                             "command": ["sh", "-c", "echo hello-from-the-cloud; sleep 3600"] }],
        },
    });
    let f = lab.dir.join("pod.json");
    std::fs::write(&f, pod.to_string()).unwrap();
    let o = lab.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait("the pod's log", 120, || {
        let o = lab.kubectl(&["logs", "hello"]);
        String::from_utf8_lossy(&o.stdout).contains("hello-from-the-cloud")
    });

    // CoreDNS (a release: its image cannot run here) takes the address the
    // kubelets give pods.
    let o = lab.kubectl(&[
        "get",
        "svc",
        "-n",
        "cluster-dns",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "10.97.0.10",
        "{}",
        text(&o)
    );
    let o = lab.kubectl(&[
        "get",
        "--raw",
        "/api/v1/nodes/lab-cc-worker-0/proxy/configz",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(r#""clusterDNS":["10.97.0.10"]"#),
        "{}",
        text(&o)
    );

    let again = lab.run(&["plan", ENV]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "a rerun plans nothing: {}",
        text(&again)
    );

    let t0 = Instant::now();
    let down = lab.run(&["destroy", ENV, "--auto-approve"]);
    assert!(down.status.success(), "destroy: {}", text(&down));
    eprintln!("destroy: {:.1} s", t0.elapsed().as_secs_f64());
    let left = lab.state();
    assert!(
        left["resources"].as_object().is_none_or(|m| m.is_empty()),
        "{}",
        left["resources"]
    );
}
