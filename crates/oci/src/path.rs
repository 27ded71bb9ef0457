//! Parser for the paths under `/v2/`. One catch-all route feeds this parser so that repository
//! names of any depth work; the name is whatever precedes the last route keyword, which is why
//! parsing goes from the right.

/// A recognised `/v2/` endpoint, with its parts still as raw strings: validating them is the
/// caller's job because each part maps to a different error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Route<'a> {
    Base,
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    UploadStart { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

impl V2Route<'_> {
    /// The repository the route addresses, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            V2Route::Base | V2Route::Catalog => None,
            V2Route::Tags { name }
            | V2Route::Manifest { name, .. }
            | V2Route::Blob { name, .. }
            | V2Route::UploadStart { name }
            | V2Route::Upload { name, .. }
            | V2Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Parses the part of the path after `/v2/` (so `""` is the base endpoint). Returns `None` for a
/// path that names no endpoint.
pub fn parse_v2_path(rest: &str) -> Option<V2Route<'_>> {
    if rest.is_empty() {
        return Some(V2Route::Base);
    }
    if rest == "_catalog" {
        return Some(V2Route::Catalog);
    }
    let nonempty = |s: &str| !s.is_empty();
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return nonempty(name).then_some(V2Route::Tags { name });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return nonempty(name).then_some(V2Route::UploadStart { name });
    }
    let (head, last) = rest.rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    let (name, keyword) = head.rsplit_once('/')?;
    if !nonempty(name) {
        return None;
    }
    match keyword {
        "manifests" => Some(V2Route::Manifest {
            name,
            reference: last,
        }),
        "blobs" => Some(V2Route::Blob { name, digest: last }),
        "referrers" => Some(V2Route::Referrers { name, digest: last }),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            nonempty(name).then_some(V2Route::Upload { name, id: last })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: Option<V2Route<'_>>) {
        assert_eq!(parse_v2_path(path), expected, "{path}");
    }

    #[test]
    fn routes() {
        check("", Some(V2Route::Base));
        check("_catalog", Some(V2Route::Catalog));
        check("a/tags/list", Some(V2Route::Tags { name: "a" }));
        check(
            "a/b/c/d/e/f/g/h/tags/list",
            Some(V2Route::Tags {
                name: "a/b/c/d/e/f/g/h",
            }),
        );
        check(
            "a/b/manifests/latest",
            Some(V2Route::Manifest {
                name: "a/b",
                reference: "latest",
            }),
        );
        check(
            "a/blobs/sha256:x",
            Some(V2Route::Blob {
                name: "a",
                digest: "sha256:x",
            }),
        );
        check("a/blobs/uploads/", Some(V2Route::UploadStart { name: "a" }));
        check("a/blobs/uploads", Some(V2Route::UploadStart { name: "a" }));
        check(
            "a/blobs/uploads/123",
            Some(V2Route::Upload {
                name: "a",
                id: "123",
            }),
        );
        check(
            "a/referrers/sha256:x",
            Some(V2Route::Referrers {
                name: "a",
                digest: "sha256:x",
            }),
        );
        // Keywords inside names.
        check(
            "manifests/manifests/x",
            Some(V2Route::Manifest {
                name: "manifests",
                reference: "x",
            }),
        );
        check(
            "blobs/blobs/uploads/",
            Some(V2Route::UploadStart { name: "blobs" }),
        );
        check(
            "tags/list/tags/list",
            Some(V2Route::Tags { name: "tags/list" }),
        );
    }

    #[test]
    fn non_routes() {
        for p in [
            "x",
            "/tags/list",
            "a/manifests/",
            "manifests/x",
            "a/other/x",
            "/blobs/uploads/",
            "blobs/uploads/1",
            "a/tags",
        ] {
            check(p, None);
        }
    }
}
