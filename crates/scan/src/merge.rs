//! Merging layer indexes into the image's final filesystem, and the inventory of what survives.
//!
//! Layers apply bottom to top. In each, whiteouts and opaque directories first hide what the
//! layers below put there (never what the same layer adds), then the layer's entries replace
//! whatever was at their paths; a non-directory replacing a directory hides the directory's
//! contents. A file's findings count only if the file is still there at the end, from the layer
//! that provides it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{Ecosystem, EntryKind, FileFindings, LayerIndex, OsInfo, Package, Warning};
use crate::purl::purl;

/// The final filesystem: each path, the layer (index into the list) that provides it, and what
/// it is.
pub struct MergedFs<'a> {
    pub entries: BTreeMap<&'a str, (usize, &'a EntryKind)>,
}

impl<'a> MergedFs<'a> {
    pub fn build(layers: &'a [LayerIndex]) -> MergedFs<'a> {
        let mut entries: BTreeMap<&'a str, (usize, &'a EntryKind)> = BTreeMap::new();
        for (li, layer) in layers.iter().enumerate() {
            for e in &layer.entries {
                match e.kind {
                    EntryKind::Whiteout => {
                        remove_lower(&mut entries, &e.path, li, true);
                    }
                    EntryKind::Opaque => {
                        remove_lower(&mut entries, &e.path, li, false);
                    }
                    _ => {}
                }
            }
            for e in &layer.entries {
                match e.kind {
                    EntryKind::Whiteout | EntryKind::Opaque => {}
                    EntryKind::Dir => {
                        entries.insert(&e.path, (li, &e.kind));
                    }
                    _ => {
                        remove_lower(&mut entries, &e.path, li, false);
                        entries.insert(&e.path, (li, &e.kind));
                    }
                }
            }
        }
        MergedFs { entries }
    }

    /// Follows symbolic links (in any component, up to 40 of them) to the path they end at.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(part);
            let cur = done.join("/");
            if let Some((_, EntryKind::Symlink { target })) = self.entries.get(cur.as_str()) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|s| !s.is_empty())
                        .rev()
                        .map(str::to_owned),
                );
            }
        }
        Some(done.join("/"))
    }
}

/// Removes from `entries` what layers below `layer` put at `path` (if `itself`) and under it.
fn remove_lower(
    entries: &mut BTreeMap<&str, (usize, &EntryKind)>,
    path: &str,
    layer: usize,
    itself: bool,
) {
    if itself && entries.get(path).is_some_and(|(l, _)| *l < layer) {
        entries.remove(path);
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let doomed: Vec<&str> = entries
        .range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, (l, _))| *l < layer)
        .map(|(k, _)| *k)
        .collect();
    for k in doomed {
        entries.remove(k);
    }
}

/// What the merge produces.
pub struct Inventory {
    pub os: Option<OsInfo>,
    pub packages: Vec<Package>,
    pub warnings: Vec<Warning>,
}

/// Builds the inventory of the final filesystem described by `layers` (bottom first).
pub fn inventory(layers: &[LayerIndex]) -> Inventory {
    let fs = MergedFs::build(layers);
    let findings: Vec<HashMap<&str, &FileFindings>> = layers
        .iter()
        .map(|l| l.findings.iter().map(|f| (f.path.as_str(), f)).collect())
        .collect();
    let surviving = |path: &str| -> Option<&FileFindings> {
        let (li, kind) = fs.entries.get(path)?;
        match kind {
            EntryKind::File { .. } => findings[*li].get(path).copied(),
            // A hard link whose target is in a lower layer: the target's content, as it is in
            // the layers up to this one.
            EntryKind::Hardlink { target } => findings[*li].get(path).copied().or_else(|| {
                (0..=*li)
                    .rev()
                    .find_map(|l| findings[l].get(target.as_str()).copied())
            }),
            _ => None,
        }
    };

    let os = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .filter_map(|p| fs.resolve(p))
        .find_map(|p| surviving(&p).and_then(|f| f.os.clone()));

    let mut packages: Vec<Package> = Vec::new();
    let mut lists: HashMap<String, Vec<String>> = HashMap::new();
    for (path, (_, kind)) in &fs.entries {
        if !matches!(kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
            continue;
        }
        let Some(f) = surviving(path) else { continue };
        for p in &f.packages {
            let mut p = p.clone();
            // A hard link across layers: the bytes are the target's, the location is the link.
            if f.path != *path {
                for e in &mut p.evidence {
                    e.path = (*path).to_owned();
                }
            }
            packages.push(p);
        }
        if let Some(list) = &f.file_list {
            lists
                .entry(list.owner.clone())
                .or_default()
                .extend(list.files.iter().cloned());
        }
    }

    // dpkg keeps file lists beside the database: `<name>.list` or `<name>:<arch>.list`.
    for p in packages
        .iter_mut()
        .filter(|p| p.ecosystem == Ecosystem::Deb)
    {
        let keys = [
            p.name.clone(),
            format!("{}:{}", p.name, p.arch.as_deref().unwrap_or_default()),
        ];
        for k in keys {
            if let Some(files) = lists.get(&k) {
                p.files.extend(files.iter().cloned());
            }
        }
        p.files.sort();
        p.files.dedup();
    }

    // A binary that an OS package installed is that package, not a second finding. Package
    // managers record paths as installed (`/lib/x86_64-linux-gnu/libc.so.6`), which on a
    // merged-/usr system reach the file through a symlink (`lib -> usr/lib`): compare both the
    // recorded and the resolved path.
    let mut owned: HashSet<String> = HashSet::new();
    let mut resolved_dirs: HashMap<String, String> = HashMap::new();
    for f in packages
        .iter()
        .filter(|p| p.ecosystem.is_os())
        .flat_map(|p| p.files.iter())
    {
        owned.insert(f.clone());
        // The merged-/usr aliases, for images that lack the `lib -> usr/lib` symlinks
        // themselves (a partial filesystem, or one assembled from selected directories).
        if ["bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/"]
            .iter()
            .any(|d| f.starts_with(d))
        {
            owned.insert(format!("usr/{f}"));
        }
        // Resolve the directory once per directory, not once per file.
        let (dir, base) = f.rsplit_once('/').unwrap_or(("", f.as_str()));
        let rdir = resolved_dirs
            .entry(dir.to_owned())
            .or_insert_with(|| fs.resolve(dir).unwrap_or_else(|| dir.to_owned()));
        owned.insert(if rdir.is_empty() {
            base.to_owned()
        } else {
            format!("{rdir}/{base}")
        });
    }
    packages.retain(|p| {
        p.ecosystem != Ecosystem::Binary || !p.evidence.iter().all(|e| owned.contains(&e.path))
    });

    for p in &mut packages {
        finish_identity(p, os.as_ref());
    }
    let mut packages = dedup(packages);
    for p in &mut packages {
        p.files.clear();
    }
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version).cmp(&(b.ecosystem, &b.name, &b.version))
    });

    let warnings = layers
        .iter()
        .flat_map(|l| l.warnings.iter().cloned())
        .collect();
    Inventory {
        os,
        packages,
        warnings,
    }
}

/// Merges packages that are the same (same purl) into one, with all their evidence.
fn dedup(packages: Vec<Package>) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for p in packages {
        match seen.get(&p.purl) {
            Some(&i) => {
                let e = &mut out[i].evidence;
                e.extend(p.evidence);
                e.sort();
                e.dedup();
            }
            None => {
                seen.insert(p.purl.clone(), out.len());
                out.push(p);
            }
        }
    }
    out
}

/// Fills in the purl (which needs the OS for its namespace and distro qualifier) and the CPEs
/// that every package of an ecosystem gets.
pub fn finish_identity(p: &mut Package, os: Option<&OsInfo>) {
    let distro = os.map(OsInfo::distro).unwrap_or_default();
    let arch = p.arch.clone().unwrap_or_default();
    p.purl = match p.ecosystem {
        Ecosystem::Deb => {
            let ns = os
                .map(|o| o.id.as_str())
                .filter(|id| *id == "ubuntu")
                .unwrap_or("debian");
            let mut q = vec![("arch", arch.as_str()), ("distro", distro.as_str())];
            let upstream;
            if let Some(s) = &p.source
                && (s.name != p.name || s.version != p.version)
            {
                upstream = if s.version != p.version {
                    format!("{}@{}", s.name, s.version)
                } else {
                    s.name.clone()
                };
                q.push(("upstream", upstream.as_str()));
            }
            purl("deb", Some(ns), &p.name, Some(&p.version), &q)
        }
        Ecosystem::Apk => {
            let ns = os.map(|o| o.id.as_str()).unwrap_or("alpine");
            purl(
                "apk",
                Some(ns),
                &p.name,
                Some(&p.version),
                &[("arch", &arch), ("distro", &distro)],
            )
        }
        Ecosystem::Rpm => {
            let ns = match os {
                Some(o) if o.id == "rhel" => "redhat",
                Some(o) => o.id.as_str(),
                None => "redhat",
            };
            // The purl version is version-release; the epoch is a qualifier.
            let v = p
                .version
                .split_once(':')
                .map(|(_, vr)| vr)
                .unwrap_or(&p.version)
                .to_owned();
            let epoch = p.properties.get("rpm.epoch").cloned().unwrap_or_default();
            let srpm = p
                .properties
                .get("rpm.sourcerpm")
                .cloned()
                .unwrap_or_default();
            purl(
                "rpm",
                Some(ns),
                &p.name,
                Some(&v),
                &[
                    ("arch", &arch),
                    ("epoch", &epoch),
                    ("distro", &distro),
                    ("upstream", &srpm),
                ],
            )
        }
        Ecosystem::Golang => match p.name.rsplit_once('/') {
            Some((ns, n)) => purl("golang", Some(ns), n, Some(&p.version), &[]),
            None => purl("golang", None, &p.name, Some(&p.version), &[]),
        },
        Ecosystem::Cargo => purl("cargo", None, &p.name, Some(&p.version), &[]),
        Ecosystem::Pypi => purl("pypi", None, &p.name, Some(&p.version), &[]),
        Ecosystem::Npm => match p.name.split_once('/') {
            Some((scope, n)) if scope.starts_with('@') => {
                purl("npm", Some(scope), n, Some(&p.version), &[])
            }
            _ => purl("npm", None, &p.name, Some(&p.version), &[]),
        },
        Ecosystem::Maven => {
            let g = p.properties.get("maven.group").cloned();
            let a = p
                .properties
                .get("maven.artifact")
                .cloned()
                .unwrap_or_else(|| p.name.clone());
            purl("maven", g.as_deref(), &a, Some(&p.version), &[])
        }
        Ecosystem::Gem => purl("gem", None, &p.name, Some(&p.version), &[]),
        Ecosystem::Binary => purl("generic", None, &p.name, Some(&p.version), &[]),
    };
}
