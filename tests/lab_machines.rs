//! The lab cloud's servers are real machines (README "The lab cloud"):
//! `up lab` makes 1 control + 1 worker + a bastion with a floating IP; SSH to the
//! bastion by its floating IP and to each node through it, with the host keys
//! pinned from the console log (StrictHostKeyChecking=yes); the hostname is the
//! server's name and the user data ran (/etc/provisioner/node.json); the control
//! node sees its etcd volume; a reboot from inside brings a machine back with its
//! address; createImage of a running server gives an ACTIVE image that boots a new
//! server with the first's files; `destroy lab` leaves no machine, mount, netns,
//! veth or cgroup of the servers behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // state key, test only
const ENV: &str = "lab";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn lab_state() -> PathBuf {
    PathBuf::from(std::env::var("LAB_STATE").unwrap_or_else(|_| "/var/tmp/provisioner-lab".into()))
}

struct Lab {
    state_dir: PathBuf,
    tmp: tempfile::TempDir,
    /// Servers made outside the environment (the snapshot's), removed on drop.
    extra_servers: Vec<String>,
    images: Vec<String>,
}

impl Lab {
    fn new() -> Self {
        common::lab_var("OS_CLIENT_CONFIG_FILE", "openstack");
        common::lab_var("S3_ENDPOINT_URL", "s3"); // `up lab` makes the workload bucket too
        let state_dir = repo()
            .join("target/test-state")
            .join(common::unique("labmachines"));
        let tmp = tempfile::tempdir().unwrap();
        // ssh refuses a private key that others may read (git checks it out 0644)
        let key = tmp.path().join("id_ed25519");
        std::fs::copy(repo().join("tests/fixtures/ssh/id_ed25519"), &key).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Lab {
            state_dir,
            tmp,
            extra_servers: Vec::new(),
            images: Vec::new(),
        }
    }

    fn provisioner(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(repo())
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .arg(ENV)
            .arg("--auto-approve");
        // The cloud layer only: with a cluster configured (KUBECONFIG, e.g. the kube lab's
        // from env.sh), `up` would deploy the platform layer too.
        c.env("PROVISIONER_STATE_KEY", KEY)
            .env_remove("OS_CLOUD")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c.output().unwrap()
    }

    fn state(&self) -> BTreeMap<String, Value> {
        let text =
            std::fs::read_to_string(self.state_dir.join(format!("{ENV}.state.json"))).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["resources"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn key(&self) -> PathBuf {
        self.tmp.path().join("id_ed25519")
    }

    fn known_hosts(&self) -> PathBuf {
        self.tmp.path().join("known_hosts")
    }

    /// ssh as `debian`, strict host key checking against our known_hosts; through the
    /// bastion (ProxyCommand with the same options: -J would not pass them on) when given.
    fn ssh(&self, via: Option<&str>, host: &str, cmd: &str) -> Output {
        let opts = |c: &mut Command| {
            c.arg("-i").arg(self.key()).arg("-o").arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ));
            c.args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ]);
        };
        let mut c = Command::new("ssh");
        opts(&mut c);
        if let Some(bastion) = via {
            let mut inner = Command::new("ssh");
            opts(&mut inner);
            let mut proxy: Vec<String> = vec!["ssh".into()];
            proxy.extend(inner.get_args().map(|a| shell_quote(&a.to_string_lossy())));
            proxy.push(format!("-W %h:%p debian@{bastion}"));
            c.arg("-o").arg(format!("ProxyCommand={}", proxy.join(" ")));
        }
        c.arg(format!("debian@{host}"))
            .arg(cmd)
            .stdin(Stdio::null());
        c.output().unwrap()
    }

    /// ssh until it answers (sshd may still be starting), then the output must be ok.
    fn ssh_ok(&self, via: Option<&str>, host: &str, cmd: &str) -> String {
        let t = Instant::now();
        loop {
            let out = self.ssh(via, host, cmd);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            let err = text(&out);
            assert!(
                !err.contains("Host key verification failed")
                    && !err.contains("REMOTE HOST IDENTIFICATION"),
                "{host}: {err}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "ssh debian@{host} (via {via:?}) `{cmd}`: {err}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Pin the SSH host keys the server printed on its console (as cloud-init does),
    /// for each of `addresses`.
    fn pin_host_keys(&self, server: &str, addresses: &[&str]) {
        let t = Instant::now();
        let keys = loop {
            let out = openstack(&["console", "log", "show", server]);
            let keys = host_keys(&out);
            if !keys.is_empty() {
                break keys;
            }
            assert!(
                t.elapsed() < Duration::from_secs(180),
                "no SSH host keys on the console of {server} after 180 s:\n{out}"
            );
            std::thread::sleep(Duration::from_secs(1));
        };
        let mut kh = std::fs::read_to_string(self.known_hosts()).unwrap_or_default();
        for a in addresses {
            for k in &keys {
                kh.push_str(&format!("{a} {k}\n"));
            }
        }
        std::fs::write(self.known_hosts(), kh).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &self.extra_servers {
            let _ = Command::new(os_cli())
                .env("OS_CLOUD", "lab-demo")
                .args(["server", "delete", "--wait", s])
                .output();
        }
        for i in &self.images {
            let _ = Command::new(os_cli())
                .env("OS_CLOUD", "lab-demo")
                .args(["image", "delete", i])
                .output();
        }
        if std::thread::panicking() {
            let _ = self.provisioner(&["destroy"]);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=/.,:@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn os_cli() -> String {
    std::env::var("LAB_OS_CLI").unwrap_or_else(|_| "openstack".into())
}

/// The openstack CLI as the demo user (the project `up lab` works in).
fn openstack(args: &[&str]) -> String {
    let out = Command::new(os_cli())
        .env("OS_CLOUD", "lab-demo")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openstack {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openstack_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    serde_json::from_str(&openstack(&a)).unwrap()
}

/// "TYPE KEY" lines between cloud-init's BEGIN/END SSH HOST KEY KEYS markers.
fn host_keys(console: &str) -> Vec<String> {
    let Some(start) = console.find("-----BEGIN SSH HOST KEY KEYS-----") else {
        return Vec::new();
    };
    let rest = &console[start..];
    let Some(end) = rest.find("-----END SSH HOST KEY KEYS-----") else {
        return Vec::new();
    };
    rest[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 2 && (f[0].starts_with("ssh-") || f[0].starts_with("ecdsa-")))
                .then(|| format!("{} {}", f[0], f[1]))
        })
        .collect()
}

fn machine_sh() -> PathBuf {
    repo().join("tests/lab/nodes/machine.sh")
}

/// What is left on the host of the machine of server `id`, and of the lab segment of
/// network `net` when given (empty = nothing).
fn leftovers(id: &str, net: Option<&str>) -> Vec<String> {
    let mut left = Vec::new();
    let name = format!("os-{id}");
    let list = Command::new(machine_sh()).arg("list").output().unwrap();
    if String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.starts_with(&format!("{name} ")))
    {
        left.push(format!("machine {name}"));
    }
    for p in [
        lab_state().join("nodes/machines").join(&name),
        PathBuf::from(format!("/run/netns/labm-{name}")),
        lab_state().join("openstack/nova/machines").join(id),
    ] {
        if p.exists() || p.is_symlink() {
            left.push(p.display().to_string());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(id))
            .map(|l| format!("mount {l}")),
    );
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = h.path().join("lab-nodes").join(&name);
        if cg.exists() {
            left.push(cg.display().to_string());
        }
    }
    if let Some(net) = net {
        let seg = format!(
            "os{}",
            net.replace('-', "").chars().take(8).collect::<String>()
        );
        if Path::new(&format!("/run/netns/labn-{seg}")).exists() {
            left.push(format!("netns labn-{seg}"));
        }
        let links = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap();
        left.extend(
            String::from_utf8_lossy(&links.stdout)
                .lines()
                .filter(|l| l.contains(&format!("labn-{seg}@")))
                .map(|l| format!("veth {l}")),
        );
    }
    left
}

fn wait_status(server: &str, want: &str) {
    let t = Instant::now();
    loop {
        let s = openstack_json(&["server", "show", server, "-c", "status"]);
        if s["status"] == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{server}: not {want} after 120 s: {s}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn fixed_ip(rec: &Value, not: &str) -> String {
    rec["outputs"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| *a != not)
        .unwrap()
        .to_owned()
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh s3 openstack"]
fn up_lab_gives_machines_that_answer_ssh_reboot_snapshot_and_leave_nothing() {
    let mut lab = Lab::new();
    // Whatever an earlier, interrupted run left of `lab` (found by its tags).
    let out = lab.provisioner(&["destroy"]);
    assert_eq!(out.status.code(), Some(0), "destroy before: {}", text(&out));

    let t0 = Instant::now();
    let out = lab.provisioner(&["up"]);
    assert_eq!(out.status.code(), Some(0), "up lab: {}", text(&out));
    let t_up = t0.elapsed();
    let st = lab.state();
    let rec = |a: &str| {
        st.get(a)
            .unwrap_or_else(|| panic!("{a} not in state: {:?}", st.keys()))
    };
    let fip = rec("floating_ip.bastion[0]")["outputs"]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let net = rec("network.main")["id"].as_str().unwrap().to_owned();
    let volume = rec("volume.control-etcd[0]")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let servers: Vec<(String, String, String, String)> =
        ["server.bastion[0]", "server.control[0]", "server.worker[0]"]
            .iter()
            .map(|a| {
                let r = rec(a);
                (
                    a.to_string(),
                    r["id"].as_str().unwrap().to_owned(),
                    r["attrs"]["name"].as_str().unwrap().to_owned(),
                    fixed_ip(r, &fip),
                )
            })
            .collect();
    let (_, bastion_id, _, bastion_ip) = &servers[0];

    // Every server is a running machine of the lab.
    for (addr, id, name, ip) in &servers {
        let st = Command::new(machine_sh())
            .args(["status", &format!("os-{id}")])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&st.stdout).starts_with(&format!("running {ip}/")),
            "{addr} ({name}): {}",
            text(&st)
        );
    }

    // Host keys from the console log (Nova's os-getConsoleOutput → the machine's console).
    lab.pin_host_keys(bastion_id, &[&fip, bastion_ip]);
    for (_, id, _, ip) in &servers[1..] {
        lab.pin_host_keys(id, &[ip]);
    }
    let t_keys = t0.elapsed();

    // SSH: the bastion by its floating IP, the nodes through it.
    for (i, (addr, _, name, ip)) in servers.iter().enumerate() {
        let via = (i > 0).then_some(fip.as_str());
        let host = if i == 0 { fip.as_str() } else { ip.as_str() };
        let out = lab.ssh_ok(
            via,
            host,
            "hostname; cat /etc/provisioner/node.json; echo; hostname -I",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], name, "{addr}: hostname is the server's name");
        let node: Value = serde_json::from_str(lines[1])
            .unwrap_or_else(|e| panic!("{addr}: node.json {e}: {out}"));
        assert_eq!(
            node["address"],
            addr.as_str(),
            "{addr}: user data ran: {node}"
        );
        assert_eq!(node["environment"], ENV);
        assert!(
            lines[2].split_whitespace().any(|a| a == ip),
            "{addr}: has its fixed IP {ip}: {out}"
        );
        assert!(
            !lines[2].contains(&fip),
            "{addr}: the floating IP is NAT, not on the machine: {out}"
        );
    }
    let t_ssh = t0.elapsed();

    // The control node's etcd volume is a directory at /mnt/volumes/<volume id>.
    let (_, _, _, control_ip) = &servers[1];
    let out = lab.ssh_ok(Some(&fip), control_ip, &format!("test -d /mnt/volumes/{volume} && echo ok-volume; sudo touch /mnt/volumes/{volume}/written"));
    assert!(out.contains("ok-volume"), "control: volume {volume}: {out}");

    // Stop and start through the API: the machine powers off (SHUTOFF) and boots again,
    // same address, same host keys, same disk and volume.
    let (_, control_id, _, _) = &servers[1];
    openstack(&["server", "stop", control_id]);
    wait_status(control_id, "SHUTOFF");
    let st = Command::new(machine_sh())
        .args(["status", &format!("os-{control_id}")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&st.stdout).starts_with("stopped "),
        "control after stop: {}",
        text(&st)
    );
    openstack(&["server", "start", control_id]);
    wait_status(control_id, "ACTIVE");
    let out = lab.ssh_ok(Some(&fip), control_ip, &format!("ls /mnt/volumes/{volume}"));
    assert_eq!(out.trim(), "written", "control after stop + start: {out}");

    // A reboot from inside: back with the same address, a new boot id.
    let (_, worker_id, worker_name, worker_ip) = &servers[2];
    let boot_id = lab.ssh_ok(Some(&fip), worker_ip, "cat /proc/sys/kernel/random/boot_id");
    let _ = lab.ssh(Some(&fip), worker_ip, "sudo systemctl reboot"); // the connection may drop
    let t = Instant::now();
    loop {
        let out = lab.ssh(
            Some(&fip),
            worker_ip,
            "cat /proc/sys/kernel/random/boot_id; hostname -I",
        );
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout).lines().next() != boot_id.lines().next()
        {
            assert!(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .any(|a| a == worker_ip),
                "{}",
                text(&out)
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "worker not back after the reboot: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let t_reboot = t.elapsed();
    let status = openstack_json(&["server", "show", worker_id, "-c", "status"]);
    assert_eq!(status["status"], "ACTIVE", "after a reboot from inside");

    // createImage of the running worker → ACTIVE image → a new server with the file.
    let token = common::unique("snapshot-token");
    lab.ssh_ok(
        Some(&fip),
        worker_ip,
        &format!("echo {token} | sudo tee /etc/lab-snapshot-token >/dev/null && sync"),
    );
    let image = common::unique("labmachines-snap");
    lab.images.push(image.clone());
    let t = Instant::now();
    openstack(&[
        "server", "image", "create", "--name", &image, "--wait", worker_id,
    ]);
    let t_snap = t.elapsed();
    let img = openstack_json(&["image", "show", &image, "-c", "status", "-c", "properties"]);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(
        img["properties"]["lab_machine"], "true",
        "the snapshot boots as a machine: {img}"
    );
    let clone = common::unique("labmachines-clone");
    lab.extra_servers.push(clone.clone());
    let s = openstack_json(&[
        "server",
        "create",
        "--image",
        &image,
        "--flavor",
        "m1.small",
        "--network",
        ENV,
        "--key-name",
        "provisioner-lab",
        "--wait",
        &clone,
        "-c",
        "id",
        "-c",
        "addresses",
    ]);
    let clone_id = s["id"].as_str().unwrap().to_owned();
    let clone_ip = match &s["addresses"] {
        Value::Object(m) => m[ENV][0].as_str().unwrap().to_owned(),
        Value::String(a) => a
            .rsplit('=')
            .next()
            .unwrap()
            .trim_matches(|c| c == '\'' || c == ']' || c == '}')
            .to_owned(),
        other => panic!("addresses {other}"),
    };
    lab.pin_host_keys(&clone_id, &[&clone_ip]);
    let out = lab.ssh_ok(
        Some(&fip),
        &clone_ip,
        "hostname; cat /etc/lab-snapshot-token",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [clone.as_str(), token.as_str()],
        "the clone of {worker_name}"
    );
    openstack(&["server", "delete", "--wait", &clone_id]);
    lab.extra_servers.clear();
    assert!(
        leftovers(&clone_id, None).is_empty(),
        "after deleting the clone: {:?}",
        leftovers(&clone_id, None)
    );
    openstack(&["image", "delete", &image]);
    lab.images.clear();

    // destroy: nothing of the servers' machines remains.
    let t = Instant::now();
    let out = lab.provisioner(&["destroy"]);
    assert_eq!(out.status.code(), Some(0), "destroy lab: {}", text(&out));
    let t_destroy = t.elapsed();
    for (addr, id, _, _) in &servers {
        let left = leftovers(id, Some(&net));
        assert!(left.is_empty(), "{addr}: left after destroy: {left:?}");
    }
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .unwrap();
    let nat = Command::new("nft")
        .args(["list", "map", "ip", "lab_openstack", "fip"])
        .output()
        .unwrap();
    for (what, out) in [("host route", &routes), ("nftables NAT", &nat)] {
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(&format!("{fip} ")),
            "{what} of the floating IP {fip} left: {}",
            text(out)
        );
    }
    eprintln!(
        "lab machines: up {:.1} s, host keys on every console {:.1} s, SSH to all {:.1} s after start; \
         reboot {:.1} s, snapshot {:.1} s, destroy {:.1} s",
        t_up.as_secs_f64(),
        t_keys.as_secs_f64(),
        t_ssh.as_secs_f64(),
        t_reboot.as_secs_f64(),
        t_snap.as_secs_f64(),
        t_destroy.as_secs_f64()
    );
}
