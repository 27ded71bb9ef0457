//! Recognising well-known programs and libraries from the strings compiled into them.
//!
//! The classifiers are data: a file-name glob saying which files a classifier looks at (`*` for
//! every ELF file, which is how statically linked copies inside other binaries are found) and a
//! byte regex whose first group is the version. Adding a program is adding a row.

use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::model::{Ecosystem, Package};

/// One row of the classifier table.
pub struct Classifier {
    /// The package name reported (`pkg:generic/<name>`).
    pub name: &'static str,
    /// Globs over the file's base name (`*` matches any run of characters).
    pub globs: &'static [&'static str],
    /// A byte regex; group 1, when it exists and matched, is the version.
    pub pattern: &'static str,
    /// CPE `vendor:product`.
    pub cpe: &'static str,
    /// When the file name carries `major.minor` (`libpython3.11.so`), a version must start with
    /// it: the weak patterns of version-only strings need the check.
    pub version_from_name: bool,
}

const ANY: &[&str] = &["*"];

/// The table. Patterns start with `(?-u)` so they match raw bytes, not UTF-8.
pub static CLASSIFIERS: &[Classifier] = &[
    Classifier {
        name: "openssl",
        globs: ANY,
        pattern: r"(?-u)OpenSSL (\d+\.\d+\.\d+[a-z]{0,2})(?:-[A-Za-z0-9]+)? {1,2}\d{1,2} [A-Z][a-z]{2} \d{4}",
        cpe: "openssl:openssl",
        version_from_name: false,
    },
    Classifier {
        name: "boringssl",
        globs: ANY,
        pattern: r"(?-u)BoringSSL",
        cpe: "google:boringssl",
        version_from_name: false,
    },
    Classifier {
        name: "zlib",
        globs: ANY,
        pattern: r"(?-u)inflate (\d+\.\d+(?:\.\d+){0,2}) Copyright",
        cpe: "zlib:zlib",
        version_from_name: false,
    },
    Classifier {
        name: "curl",
        globs: ANY,
        pattern: r"(?-u)(?:CLIENT libcurl |libcurl/|\x00curl/)(\d+\.\d+\.\d+)",
        cpe: "haxx:libcurl",
        version_from_name: false,
    },
    Classifier {
        name: "sqlite",
        globs: &["libsqlite3*", "sqlite3"],
        pattern: r"(?-u)\x00(3\.\d{1,2}\.\d{1,2}(?:\.\d+)?)\x00",
        cpe: "sqlite:sqlite",
        version_from_name: false,
    },
    Classifier {
        name: "busybox",
        globs: ANY,
        pattern: r"(?-u)BusyBox v(\d+\.\d+\.\d+)",
        cpe: "busybox:busybox",
        version_from_name: false,
    },
    Classifier {
        name: "python",
        globs: &["python*", "libpython*"],
        pattern: r"(?-u)\x00(\d\.\d{1,2}\.\d{1,2}(?:(?:a|b|rc)\d+)?)\x00",
        cpe: "python:python",
        version_from_name: true,
    },
    Classifier {
        name: "node",
        globs: &["node", "nodejs", "libnode.so*"],
        pattern: r"(?-u)node\.js/v(\d+\.\d+\.\d+)",
        cpe: "nodejs:node.js",
        version_from_name: false,
    },
    Classifier {
        name: "redis",
        globs: &["redis-server", "redis-sentinel"],
        pattern: r"(?-u)\x00(\d\.\d{1,2}\.\d{1,2})\x00",
        cpe: "redis:redis",
        version_from_name: false,
    },
    Classifier {
        name: "nginx",
        globs: &["nginx", "openresty"],
        pattern: r"(?-u)nginx/(\d+\.\d+\.\d+)",
        cpe: "f5:nginx",
        version_from_name: false,
    },
    Classifier {
        name: "postgresql",
        globs: &["postgres", "postmaster", "psql", "pg_*"],
        pattern: r"(?-u)\(PostgreSQL\) (\d+\.\d+(?:\.\d+)?)",
        cpe: "postgresql:postgresql",
        version_from_name: false,
    },
    Classifier {
        name: "go",
        globs: &["go"],
        pattern: r"(?-u)go(1\.\d+(?:\.\d+|rc\d+|beta\d+)?)\x00",
        cpe: "golang:go",
        version_from_name: false,
    },
    Classifier {
        name: "glibc",
        globs: &["libc.so*", "libc-*.so"],
        pattern: r"(?-u)GNU C Library [^\x00]{0,80}? release version (\d+\.\d+(?:\.\d+)?)",
        cpe: "gnu:glibc",
        version_from_name: false,
    },
    Classifier {
        name: "musl",
        globs: &["ld-musl-*.so*", "libc.musl-*.so*"],
        pattern: r"(?-u)\x00(1\.\d\.\d{1,2})\x00",
        cpe: "musl-libc:musl",
        version_from_name: false,
    },
];

static COMPILED: LazyLock<Vec<Option<Regex>>> = LazyLock::new(|| {
    CLASSIFIERS
        .iter()
        .map(|c| Regex::new(c.pattern).ok())
        .collect()
});

/// `major.minor` in a file name (`libpython3.11.so.1.0`).
static NAME_VERSION: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(\d+\.\d+)").ok());

/// Whether `name` matches `glob`, where `*` matches any run of characters.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Runs every classifier whose glob matches `path`'s base name over `data`.
pub fn classify(path: &str, data: &[u8]) -> Vec<Package> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name_version = NAME_VERSION.as_ref().and_then(|r| {
        r.captures(base.as_bytes())
            .and_then(|c| c.get(1))
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
    });
    let mut out = Vec::new();
    for (c, re) in CLASSIFIERS.iter().zip(COMPILED.iter()) {
        let Some(re) = re else { continue };
        if !c.globs.iter().any(|g| glob_match(g, base)) {
            continue;
        }
        let mut found: Option<String> = None;
        for caps in re.captures_iter(data).take(64) {
            let v = caps
                .get(1)
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default();
            if c.version_from_name
                && let Some(prefix) = &name_version
                && !v.starts_with(&format!("{prefix}."))
            {
                continue;
            }
            found = Some(v);
            break;
        }
        let Some(version) = found else { continue };
        let mut p = Package::new(
            Ecosystem::Binary,
            c.name,
            version.clone(),
            "binary-classifier",
        );
        let v = if version.is_empty() {
            "*"
        } else {
            version.as_str()
        };
        p.cpes
            .push(format!("cpe:2.3:a:{}:{v}:*:*:*:*:*:*:*", c.cpe));
        out.push(p);
    }
    out
}
