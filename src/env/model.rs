//! The typed environment model: what one `environments/<name>.yaml` (after
//! `extends:` overlays) describes. Unknown keys are errors everywhere.

use std::collections::BTreeMap;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::secret::SecretRef;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Environment name; defaults to the file name (or the name a template was instantiated with).
    #[serde(default)]
    pub name: String,
    /// Files this one overlays, relative to this file (see README "Overlays").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    /// Makes this file a template for environments whose name matches `pattern` (e.g. `ci-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Free text shown in plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub cloud: Cloud,
    pub network: Network,
    pub security: Security,
    pub keypair: Keypair,
    pub image: Image,
    pub node_pools: Vec<NodePool>,
    #[serde(default)]
    pub bastion: Bastion,
    pub cluster: Cluster,
    #[serde(default)]
    pub stacks: Vec<String>,
    /// Per-release value overrides, deep-merged over the chart's values.
    #[serde(default)]
    pub releases: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// The registry our container images are pushed to and pulled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryConfig>,
    /// Where the platform layer deploys, until the cluster layer provides the cluster.
    #[serde(default)]
    pub platform: PlatformConfig,
    /// Named secrets the platform needs; references only (env:, file:, generate:).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub apply: ApplyConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Glob with one `*`, e.g. `ci-*`. `${name}` in any string is replaced by the environment name.
    pub pattern: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    /// Entry in clouds.yaml (`--cloud`/`OS_CLOUD` override it); omit to use `OS_*` variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Name or ID of the provider network routers use as their gateway.
    pub external_network: String,
}

fn default_region() -> String {
    "RegionOne".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[schemars(with = "String")]
    pub cidr: IpNet,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default = "yes")]
    pub router: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// CIDRs allowed to reach SSH (on the bastion, or on every node without one).
    #[schemars(with = "Vec<String>")]
    pub ssh_cidrs: Vec<IpNet>,
    /// CIDRs allowed to reach the Kubernetes API (6443).
    #[schemars(with = "Vec<String>")]
    pub api_cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keypair {
    pub name: String,
    /// Public key file to upload (`~` is expanded). Its private half never leaves your machine.
    pub public_key_file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Glance image name or ID the nodes boot from.
    pub name: String,
    /// Folder under `images/` this image is built from, if the project builds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default = "default_user")]
    pub ssh_user: String,
}

fn default_user() -> String {
    "debian".into()
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Etcd,
    Controlplane,
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServerGroupPolicy {
    AntiAffinity,
    SoftAntiAffinity,
    Affinity,
    SoftAffinity,
}

impl ServerGroupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AntiAffinity => "anti-affinity",
            Self::SoftAntiAffinity => "soft-anti-affinity",
            Self::Affinity => "affinity",
            Self::SoftAffinity => "soft-affinity",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePool {
    pub name: String,
    pub count: u32,
    pub flavor: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_group: Option<ServerGroupPolicy>,
    /// Boot from a new volume of this size instead of the flavor's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume_gb: Option<u32>,
    #[serde(default)]
    pub floating_ip: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    pub name: String,
    pub size_gb: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bastion {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_bastion_flavor")]
    pub flavor: String,
}

fn default_bastion_flavor() -> String {
    "m1.tiny".into()
}

impl Default for Bastion {
    fn default() -> Self {
        Self {
            enabled: false,
            flavor: default_bastion_flavor(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Our own RKE-style bootstrap over SSH (upstream binaries, systemd units).
    Rke,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// CNI bridge + host-local per node, routes between the nodes' pod CIDRs:
    /// no image, no overlay (on OpenStack the ports admit the pod CIDRs).
    Bridge,
    Flannel,
    Canal,
    Calico,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// e.g. `v1.20.15`
    pub kubernetes_version: String,
    #[serde(default = "default_distribution")]
    pub distribution: Distribution,
    #[schemars(with = "String")]
    pub pod_cidr: IpNet,
    #[schemars(with = "String")]
    pub service_cidr: IpNet,
    #[serde(default = "default_cni")]
    pub cni: Cni,
    #[serde(default)]
    pub etcd_snapshots: EtcdSnapshots,
    /// Bootstrap Kubernetes on the nodes (`false`: the cluster layer is left out).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Machines that exist already (RKE's `nodes:`); without them the cluster
    /// runs on the servers of `node_pools`, by their roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<StaticNode>,
    #[serde(default)]
    pub ssh: ClusterSsh,
    /// Where node binaries come from, checked against the source's SHA256SUMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
    /// The API address clients use (a load balancer or floating IP); default:
    /// the first control-plane node's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    #[serde(default)]
    pub kubeconfig: KubeconfigOut,
    #[serde(default)]
    pub certificates: ClusterCertificates,
    #[serde(default)]
    pub node_config: NodeConfig,
}

/// A machine that exists already, reached over SSH.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticNode {
    /// The Kubernetes node name (DNS label).
    pub name: String,
    pub address: String,
    pub roles: Vec<Role>,
    /// SSH user when it differs from `cluster.ssh.user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The node's SSH host key (`TYPE BASE64`) when known ahead; otherwise it
    /// is pinned on first contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSsh {
    /// Login user (default: `image.ssh_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Private key file (`~` expanded); the SSH agent is tried after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Jump host for static nodes (the cloud layer's bastion is used by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<StaticBastion>,
    /// Parallel SSH sessions in all (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticBastion {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

/// Binaries by name (`kubelet`, `etcd`, `cni/bridge`, `images/pause.oci.tar`):
/// a local directory (uploaded over SSH) or a URL template the nodes
/// download from (`{version}` and `{name}` replaced); both hold a SHA256SUMS.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Artifacts {
    Dir(String),
    Url(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigOut {
    /// Where the admin kubeconfig is written (default `~/.kube/provisioner-<env>.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Also merge it into `~/.kube/config` as context `<env>`.
    #[serde(default)]
    pub merge: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterCertificates {
    /// Leaf certificates (CAs get ten times as long).
    #[serde(default = "default_cert_days")]
    pub validity_days: u32,
    /// `up` renews a leaf certificate this close to its expiry.
    #[serde(default = "default_renew_days")]
    pub renew_before_days: u32,
}

fn default_cert_days() -> u32 {
    365
}
fn default_renew_days() -> u32 {
    90
}

impl Default for ClusterCertificates {
    fn default() -> Self {
        Self {
            validity_days: default_cert_days(),
            renew_before_days: default_renew_days(),
        }
    }
}

/// What the nodes' runtime needs to know about the machines they are.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `systemd` on real machines; `cgroupfs` in containers (the lab's nspawn machines).
    #[serde(default = "default_cgroup_driver")]
    pub cgroup_driver: String,
    /// Extra KubeletConfiguration fields, merged over the defaults.
    #[serde(default)]
    pub kubelet: serde_json::Value,
    /// containerd's `restrict_oom_score_adj` (needed where the machine lacks CAP_SYS_RESOURCE).
    #[serde(default)]
    pub restrict_oom_score_adj: bool,
    /// The pod sandbox image.
    #[serde(default = "default_pause_image")]
    pub pause_image: String,
    /// OCI archives among the artifacts imported into containerd on every worker
    /// (airgapped images, the lab's).
    #[serde(default)]
    pub preload_images: Vec<String>,
}

fn default_cgroup_driver() -> String {
    "systemd".into()
}
fn default_pause_image() -> String {
    "registry.k8s.io/pause:3.9".into()
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            cgroup_driver: default_cgroup_driver(),
            kubelet: serde_json::Value::Null,
            restrict_oom_score_adj: false,
            pause_image: default_pause_image(),
            preload_images: Vec::new(),
        }
    }
}

fn default_distribution() -> Distribution {
    Distribution::Rke
}
fn default_cni() -> Cni {
    Cni::Bridge
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdSnapshots {
    #[serde(default = "default_interval")]
    pub interval_hours: u32,
    #[serde(default = "default_retention")]
    pub retention: u32,
    /// Also copy snapshots to this bucket (see `buckets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
}

fn default_interval() -> u32 {
    12
}
fn default_retention() -> u32 {
    6
}

impl Default for EtcdSnapshots {
    fn default() -> Self {
        Self {
            interval_hours: default_interval(),
            retention: default_retention(),
            s3: None,
        }
    }
}

/// An S3 endpoint plus credentials; `endpoint` empty means AWS.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Location {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS servers.
    #[serde(default)]
    pub path_style: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretRef>,
    /// Create the bucket and own it (tagged); otherwise it must already exist.
    #[serde(default)]
    pub create: bool,
    /// Allow `destroy` to delete the bucket's objects too. Off: a non-empty bucket stops destroy.
    #[serde(default)]
    pub force_destroy: bool,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub namespace: String,
    /// An image reference, or `{build: images/geozarr}`: built from that
    /// recipe, pushed to `registry:`, referenced by digest.
    pub image: WorkloadImage,
    pub s3: S3Location,
    /// Storage class objects are written with, e.g. `STANDARD`, `STANDARD_IA`.
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
    pub stac_api_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub titiler_url: Option<String>,
    #[serde(default)]
    pub collections: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum WorkloadImage {
    /// Used as written (a tag moves; prefer `repo@sha256:…`).
    Reference(String),
    Build(ImageBuild),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageBuild {
    /// Folder of the recipe (`image.yaml`), relative to the project root.
    pub build: String,
}

impl WorkloadImage {
    /// The recipe folder, when the image is built here.
    pub fn build_dir(&self) -> Option<&str> {
        match self {
            WorkloadImage::Build(b) => Some(&b.build),
            WorkloadImage::Reference(_) => None,
        }
    }
}

/// An OCI registry (distribution API). Credentials are references, read
/// when pushing and when the pull secret is deployed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `https://host[:port]`; `http://` only with `insecure: true`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// A CA certificate (PEM) to trust for this registry besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Plain HTTP or unverified TLS.
    #[serde(default)]
    pub insecure: bool,
    /// Name of the `imagePullSecrets` Secret made in each namespace that runs our images.
    #[serde(default = "default_pull_secret")]
    pub pull_secret: String,
}

fn default_pull_secret() -> String {
    "provisioner-registry".into()
}

fn default_storage_class() -> String {
    "STANDARD".into()
}

/// The cluster the platform layer deploys to. Without a kubeconfig here,
/// `--kubeconfig` or `$KUBECONFIG`, `up` leaves the platform layer out (and
/// says so) and `deploy` refuses.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Kubeconfig file (`~` is expanded); `--kubeconfig` and `$KUBECONFIG` override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// Context in that kubeconfig (default: its current context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Wait for every release to be ready (off where images cannot run, e.g. the lab).
    #[serde(default = "yes")]
    pub wait: bool,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            wait: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Local,
    S3,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: BackendKind,
    /// Local backend: folder for `<env>.state.json` and its lock (default `.provisioner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// S3 backend: where state and lock objects live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    /// Lease length for the S3 lock, renewed while a command runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Key that encrypts generated secrets in state (32 bytes, base64). Default:
    /// `{env: PROVISIONER_STATE_KEY}`, else a key file under `~/.config/provisioner/keys/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<SecretRef>,
}

/// Generous, explicit timeouts in seconds (design principle 5).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "t_create")]
    pub create: u64,
    #[serde(default = "t_delete")]
    pub delete: u64,
    #[serde(default = "t_request")]
    pub request: u64,
    /// How long a release's objects may take to become ready (platform layer).
    #[serde(default = "t_ready")]
    pub ready: u64,
}

fn t_ready() -> u64 {
    600
}

fn t_create() -> u64 {
    1800
}
fn t_delete() -> u64 {
    600
}
fn t_request() -> u64 {
    60
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            create: t_create(),
            delete: t_delete(),
            request: t_request(),
            ready: t_ready(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// How many resource operations run at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
}

fn default_parallelism() -> usize {
    8
}

impl Default for ApplyConfig {
    fn default() -> Self {
        Self {
            parallelism: default_parallelism(),
        }
    }
}
