//! Finding, reading, overlaying and typing environment files.

use std::path::{Path, PathBuf};

use super::model::Environment;
use super::node::{Loc, LocIndex, Node, NodeValue, ParseError};
use super::validate;

/// Environments shipped with the project, used when no `environments/` folder
/// is present (so `provisioner plan staging` works from any directory).
const EMBEDDED: &[(&str, &str)] = &[
    ("base.yaml", include_str!("../../environments/base.yaml")),
    (
        "staging.yaml",
        include_str!("../../environments/staging.yaml"),
    ),
    (
        "production.yaml",
        include_str!("../../environments/production.yaml"),
    ),
    ("ci.yaml", include_str!("../../environments/ci.yaml")),
    ("lab.yaml", include_str!("../../environments/lab.yaml")),
];

/// Where environment files come from.
#[derive(Debug, Clone)]
pub enum Source {
    Dir(PathBuf),
    Embedded,
}

impl Source {
    /// `environments/` under the current directory if it exists, else the embedded set.
    pub fn discover(explicit: Option<&Path>) -> Source {
        match explicit {
            Some(p) => Source::Dir(p.to_path_buf()),
            None if Path::new("environments").is_dir() => {
                Source::Dir(PathBuf::from("environments"))
            }
            None => Source::Embedded,
        }
    }

    fn read(&self, rel: &Path) -> Result<(PathBuf, String), EnvError> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(rel);
                let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Read {
                    path: path.clone(),
                    source,
                })?;
                Ok((path, text))
            }
            Source::Embedded => {
                let name = rel.to_string_lossy();
                EMBEDDED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(n, t)| {
                        (
                            PathBuf::from(format!("<embedded>/environments/{n}")),
                            (*t).to_owned(),
                        )
                    })
                    .ok_or_else(|| EnvError::Read {
                        path: PathBuf::from(format!("<embedded>/environments/{name}")),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    })
            }
        }
    }

    fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Source::Dir(dir) => std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()
                                .and_then(|n| n.strip_suffix(".yaml"))
                                .map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Source::Embedded => EMBEDDED
                .iter()
                .map(|(n, _)| n.trim_end_matches(".yaml").to_owned())
                .collect(),
        };
        names.sort();
        names
    }
}

/// A loaded, merged, typed and validated environment.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub env: Environment,
    /// Files read, the environment's own file last.
    pub files: Vec<PathBuf>,
    /// `sha256:` of each file's bytes, in the order of `files` (saved plans
    /// compare them to say which file changed).
    pub digests: Vec<String>,
    pub index: LocIndex,
    pub warnings: Vec<Problem>,
}

/// One thing wrong with an environment, with where it was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("no environment `{name}` in {where_}; available: {}. Add environments/{name}.yaml or a template whose `template.pattern` matches it", available.join(", "))]
    NotFound {
        name: String,
        where_: String,
        available: Vec<String>,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{at}: `extends` forms a cycle: {}\n  hint: a file may not extend itself, directly or through others", chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle { at: Loc, chain: Vec<PathBuf> },
    #[error("{} problem(s) in environment `{name}`:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        name: String,
        problems: Vec<Problem>,
    },
}

impl EnvError {
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            EnvError::Cycle { at, .. } => vec![Problem {
                location: Some(at.to_string()),
                field: "extends".into(),
                message: self
                    .to_string()
                    .split_once(": ")
                    .map(|(_, m)| m.to_owned())
                    .unwrap_or_default(),
                hint: None,
            }],
            EnvError::Invalid { problems, .. } => problems.clone(),
            EnvError::Parse(p) => vec![Problem {
                location: Some(p.loc.to_string()),
                field: String::new(),
                message: p.message.clone(),
                hint: Some("fix the YAML syntax at that position".into()),
            }],
            other => vec![Problem {
                location: None,
                field: String::new(),
                message: other.to_string(),
                hint: None,
            }],
        }
    }
}

/// Load environment `name` (or a path to a `.yaml` file).
pub fn load(source: &Source, name: &str) -> Result<Loaded, EnvError> {
    let (source, rel, env_name) = resolve(source, name)?;
    let mut read = Vec::new();
    let mut merged = read_tree(&source, &rel, &mut read, &mut Vec::new(), None)?;
    let (files, digests) = read.into_iter().unzip();
    let template = merged
        .get("template")
        .and_then(|t| t.get("pattern"))
        .and_then(Node::as_str)
        .map(str::to_owned);
    let env_name = match (&template, env_name) {
        // Validating the template file itself: instantiate it with an example name.
        (Some(pattern), None) => pattern.replace('*', "example"),
        (_, Some(n)) => n,
        (None, None) => rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    strip_keys(&mut merged, &["extends", "template"]);
    substitute(&mut merged, &env_name);
    let mut index = LocIndex::default();
    let json = merged.to_json(&mut index, "");
    let mut env: Environment = serde_path_to_error::deserialize(json.clone()).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let (field, loc) = locate_serde_error(&index, &field, &message);
        EnvError::Invalid {
            name: env_name.clone(),
            problems: vec![Problem {
                location: loc.map(|l| l.to_string()),
                field,
                hint: hint_for(&message),
                message,
            }],
        }
    })?;
    if env.name.is_empty() {
        env.name = env_name.clone();
    }
    let (errors, warnings) = validate::check(&env, &json, &index);
    if !errors.is_empty() {
        return Err(EnvError::Invalid {
            name: env_name,
            problems: errors,
        });
    }
    Ok(Loaded {
        env,
        files,
        digests,
        index,
        warnings,
    })
}

/// Name → (source, file relative to it, instantiated name if any).
fn resolve(source: &Source, name: &str) -> Result<(Source, PathBuf, Option<String>), EnvError> {
    if name.ends_with(".yaml") || name.contains('/') {
        let p = PathBuf::from(name);
        let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
        let file = p.file_name().map(PathBuf::from).unwrap_or_default();
        return Ok((Source::Dir(dir), file, None));
    }
    let direct = PathBuf::from(format!("{name}.yaml"));
    if source.read(&direct).is_ok() {
        // A template file named directly (`validate ci`) is validated as an example instance.
        return Ok((source.clone(), direct, None));
    }
    for candidate in source.list() {
        let rel = PathBuf::from(format!("{candidate}.yaml"));
        let Ok((path, text)) = source.read(&rel) else {
            continue;
        };
        let Ok(tree) = Node::parse(&text, &path) else {
            continue;
        };
        if let Some(pattern) = tree
            .get("template")
            .and_then(|t| t.get("pattern"))
            .and_then(Node::as_str)
            && matches_pattern(pattern, name)
        {
            return Ok((source.clone(), rel, Some(name.to_owned())));
        }
    }
    Err(EnvError::NotFound {
        name: name.into(),
        where_: match source {
            Source::Dir(d) => d.display().to_string(),
            Source::Embedded => "the embedded environments (no ./environments folder here)".into(),
        },
        available: source.list(),
    })
}

/// `ci-*` matches `ci-1234`; names stay DNS-label safe.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match pattern.split_once('*') {
        Some((pre, post)) => {
            valid
                && name.len() > pre.len() + post.len()
                && name.starts_with(pre)
                && name.ends_with(post)
        }
        None => pattern == name,
    }
}

fn read_tree(
    source: &Source,
    rel: &Path,
    files: &mut Vec<(PathBuf, String)>,
    chain: &mut Vec<PathBuf>,
    from: Option<Loc>,
) -> Result<Node, EnvError> {
    let (path, text) = source.read(rel)?;
    if chain.contains(&path) {
        chain.push(path.clone());
        let at = from.unwrap_or(Loc {
            file: path,
            line: 1,
            column: 1,
        });
        return Err(EnvError::Cycle {
            at,
            chain: chain.clone(),
        });
    }
    chain.push(path.clone());
    let tree = Node::parse(&text, &path)?;
    let parents: Vec<(String, Loc)> = match tree.get("extends") {
        None => Vec::new(),
        Some(
            n @ Node {
                value: NodeValue::Str(s),
                ..
            },
        ) => vec![(s.clone(), n.loc.clone())],
        Some(Node {
            value: NodeValue::Seq(items),
            ..
        }) => items
            .iter()
            .filter_map(|n| n.as_str().map(|s| (s.to_owned(), n.loc.clone())))
            .collect(),
        Some(_) => Vec::new(), // typed pass reports the wrong shape
    };
    let mut merged: Option<Node> = None;
    for (parent, loc) in parents {
        let parent_rel = rel.parent().unwrap_or(Path::new("")).join(&parent);
        let t = read_tree(source, &parent_rel, files, chain, Some(loc))?;
        merged = Some(match merged {
            Some(m) => m.merge(t),
            None => t,
        });
    }
    chain.pop();
    files.push((path, crate::core::digest::sha256(text.as_bytes())));
    Ok(match merged {
        Some(m) => m.merge(tree),
        None => tree,
    })
}

fn strip_keys(node: &mut Node, keys: &[&str]) {
    if let NodeValue::Map(entries) = &mut node.value {
        entries.retain(|(k, _, _)| !keys.contains(&k.as_str()));
    }
}

fn substitute(node: &mut Node, name: &str) {
    match &mut node.value {
        NodeValue::Str(s) if s.contains("${name}") => *s = s.replace("${name}", name),
        NodeValue::Seq(items) => items.iter_mut().for_each(|n| substitute(n, name)),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|(_, _, n)| substitute(n, name)),
        _ => {}
    }
}

/// serde_path_to_error reports the containing path for unknown and missing
/// fields; point at the key itself where we can.
fn locate_serde_error(index: &LocIndex, path: &str, message: &str) -> (String, Option<Loc>) {
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let full = if path.is_empty() || path.ends_with(key) {
            if path.is_empty() {
                key.to_owned()
            } else {
                path.to_owned()
            }
        } else {
            format!("{path}.{key}")
        };
        return (full.clone(), index.key(&full).cloned());
    }
    (path.to_owned(), index.find(path).cloned())
}

fn hint_for(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some(
            "remove the key or fix its spelling; `provisioner schema` prints every allowed key"
                .into(),
        )
    } else if message.starts_with("missing field") {
        Some("add the field here or in a file this one extends".into())
    } else if message.contains("invalid IP address syntax") {
        Some("write a CIDR such as 10.0.0.0/24".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern("ci-*", "ci-1234"));
        assert!(!matches_pattern("ci-*", "ci-"));
        assert!(!matches_pattern("ci-*", "staging"));
        assert!(!matches_pattern("ci-*", "ci-ABC"));
    }

    #[test]
    fn embedded_environments_load() {
        for name in ["staging", "production", "lab", "ci-1234"] {
            let l = load(&Source::Embedded, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(l.env.name, name);
        }
    }
}
