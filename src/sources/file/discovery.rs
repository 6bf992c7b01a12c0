//! Finding the files that match the `include`/`exclude` globs.
//!
//! Each include pattern is split into its literal base directory (the path
//! components before the first one with a glob metacharacter) and the rest.
//! Only base directories are walked, each at most once per scan, and only as
//! deep as the pattern can reach (unbounded only for `**`). Directory
//! symlinks are not followed while walking (no loops); file symlinks are
//! reported under their own path and followed by the caller.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

pub(crate) fn compile_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// The literal base directory of `pattern` and how many levels below it the
/// pattern can match (`None` = unbounded, because of `**`).
pub(crate) fn base_of(pattern: &str) -> (PathBuf, Option<usize>) {
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut rest: Vec<String> = Vec::new();
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy();
        if rest.is_empty() && !has_meta(&text) {
            match component {
                Component::RootDir | Component::Prefix(_) | Component::Normal(_) => {
                    base.push(component.as_os_str())
                }
                Component::CurDir | Component::ParentDir => base.push(component.as_os_str()),
            }
        } else {
            rest.push(text.into_owned());
        }
    }
    if rest.is_empty() {
        // A literal path: walk its parent directory, one level deep.
        let parent = base.parent().map(Path::to_path_buf).unwrap_or(base);
        return (parent, Some(1));
    }
    let depth = if rest.iter().any(|c| c.contains("**")) {
        None
    } else {
        Some(rest.len())
    };
    (base, depth)
}

/// Compiled include and exclude patterns.
pub(crate) struct Matcher {
    include: GlobSet,
    exclude: GlobSet,
    /// Base directory -> maximum depth (`None` = unbounded).
    bases: BTreeMap<PathBuf, Option<usize>>,
}

impl Matcher {
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self, globset::Error> {
        let mut inc = GlobSetBuilder::new();
        let mut bases: BTreeMap<PathBuf, Option<usize>> = BTreeMap::new();
        for pattern in include {
            inc.add(compile_glob(pattern)?);
            let (base, depth) = base_of(pattern);
            let slot = bases.entry(base).or_insert(Some(0));
            *slot = match (*slot, depth) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
        }
        // Drop bases already covered by an unbounded walk of an ancestor.
        let unbounded: Vec<PathBuf> = bases
            .iter()
            .filter(|(_, d)| d.is_none())
            .map(|(b, _)| b.clone())
            .collect();
        bases.retain(|b, _| !unbounded.iter().any(|u| u != b && b.starts_with(u)));
        let mut exc = GlobSetBuilder::new();
        for pattern in exclude {
            exc.add(compile_glob(pattern)?);
        }
        Ok(Self {
            include: inc.build()?,
            exclude: exc.build()?,
            bases,
        })
    }

    pub(crate) fn matches(&self, path: &Path) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    /// The directories walked by a scan (watched for new files).
    pub(crate) fn base_dirs(&self) -> impl Iterator<Item = &Path> {
        self.bases.keys().map(PathBuf::as_path)
    }

    /// Every existing path (file or symlink) that matches. Unreadable
    /// directories are skipped silently: they may appear later.
    pub(crate) fn scan(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (base, depth) in &self.bases {
            let mut walk = walkdir::WalkDir::new(base).follow_links(false).min_depth(1);
            if let Some(depth) = depth {
                walk = walk.max_depth(*depth);
            }
            for entry in walk.into_iter().filter_map(Result::ok) {
                if entry.file_type().is_dir() {
                    continue;
                }
                let path = entry.path();
                if self.matches(path) {
                    out.push(entry.into_path());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_and_depths() {
        assert_eq!(
            base_of("/var/log/*.log"),
            (PathBuf::from("/var/log"), Some(1))
        );
        assert_eq!(
            base_of("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), None)
        );
        assert_eq!(base_of("/var/*/x/*.log"), (PathBuf::from("/var"), Some(3)));
        assert_eq!(
            base_of("/var/log/app.log"),
            (PathBuf::from("/var/log"), Some(1))
        );
    }

    #[test]
    fn scan_matches_include_minus_exclude() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        for p in [
            "x.log",
            "a/y.log",
            "a/b/c/z.log",
            "a/b/skip.log",
            "a/b/n.txt",
        ] {
            std::fs::write(root.join(p), b"").unwrap();
        }
        let inc = vec![format!("{}/**/*.log", root.display())];
        let exc = vec![format!("{}/**/skip.log", root.display())];
        let m = Matcher::new(&inc, &exc).unwrap();
        let found: Vec<_> = m
            .scan()
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        let want: Vec<PathBuf> = ["a/b/c/z.log", "a/y.log", "x.log"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(found, want);
        let m = Matcher::new(&[format!("{}/*.log", root.display())], &[]).unwrap();
        assert_eq!(m.scan(), vec![root.join("x.log")]);
    }
}
