//! Command-line flags of the Kubernetes components, by the version the
//! environment names: a flag removed since v1.20 is passed only to versions
//! that still have it (passing it to a newer binary stops it from starting).

use semver::Version;

/// Flags that exist only before a version: (component, flag, first version without it).
const REMOVED: &[(&str, &str, (u64, u64))] = &[
    ("kube-apiserver", "--insecure-port", (1, 24)),
    ("kube-controller-manager", "--port", (1, 24)),
    ("kube-scheduler", "--port", (1, 23)),
    ("kubelet", "--container-runtime", (1, 27)),
    ("kubelet", "--pod-infra-container-image", (1, 27)),
];

/// `v1.20.2` → 1.20.2; None when it is not a version.
pub fn parse(version: &str) -> Option<Version> {
    Version::parse(version.trim_start_matches('v')).ok()
}

/// Whether `flag` of `component` is accepted by `version`.
pub fn supported(component: &str, flag: &str, version: &Version) -> bool {
    !REMOVED.iter().any(|(c, f, (maj, min))| {
        *c == component && *f == flag && (version.major, version.minor) >= (*maj, *min)
    })
}

/// `--name=value` pairs for `component`, without those `version` no longer has.
pub fn render(component: &str, version: &Version, flags: &[(&str, String)]) -> Vec<String> {
    flags
        .iter()
        .filter(|(f, _)| supported(component, f, version))
        .map(|(f, v)| format!("{f}={v}"))
        .collect()
}

/// A systemd unit running `binary` with `flags`, restarted when it dies.
pub fn unit(
    description: &str,
    binary: &str,
    flags: &[String],
    after: &[&str],
    extra: &str,
) -> String {
    let mut exec = format!("ExecStart={binary}");
    for f in flags {
        exec.push_str(" \\\n  ");
        exec.push_str(f);
    }
    let after = after.join(" ");
    format!(
        "# Written by provisioner; changes here are undone by the next `up`.\n\
         [Unit]\nDescription={description}\nAfter=network-online.target {after}\nWants=network-online.target\n\n\
         [Service]\n{exec}\nRestart=always\nRestartSec=3\nLimitNOFILE=1048576\n{extra}\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_flags_are_not_passed_to_newer_versions() {
        let old = parse("v1.20.2").unwrap();
        let new = parse("v1.31.1").unwrap();
        let flags = [
            ("--insecure-port", "0".to_owned()),
            ("--secure-port", "6443".to_owned()),
        ];
        assert_eq!(
            render("kube-apiserver", &old, &flags),
            ["--insecure-port=0", "--secure-port=6443"]
        );
        assert_eq!(
            render("kube-apiserver", &new, &flags),
            ["--secure-port=6443"]
        );
        assert!(supported(
            "kubelet",
            "--container-runtime",
            &parse("1.26.0").unwrap()
        ));
        assert!(!supported(
            "kubelet",
            "--container-runtime",
            &parse("1.27.0").unwrap()
        ));
        assert!(parse("latest").is_none());
    }
}
