//! Alpine's and Wolfi's `lib/apk/db/installed`
//! (<https://wiki.alpinelinux.org/wiki/Apk_spec#Installed_Database_V2>).

use crate::model::{Ecosystem, Package, SourcePackage};

/// Parses the installed database: one record per package, records separated by blank lines,
/// `X:value` lines. File ownership comes from `F:` (a directory) followed by its `R:` files.
pub fn parse_installed(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut rec = Record::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(p) = std::mem::take(&mut rec).finish() {
                out.push(p);
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "P" => rec.name = value.to_owned(),
            "V" => rec.version = value.to_owned(),
            "A" => rec.arch = value.to_owned(),
            "o" => rec.origin = value.to_owned(),
            "L" => rec.license = value.to_owned(),
            "F" => rec.dir = value.trim_matches('/').to_owned(),
            "R" => {
                let f = if rec.dir.is_empty() {
                    value.to_owned()
                } else {
                    format!("{}/{value}", rec.dir)
                };
                rec.files.push(f);
            }
            _ => {}
        }
    }
    out
}

#[derive(Default)]
struct Record {
    name: String,
    version: String,
    arch: String,
    origin: String,
    license: String,
    dir: String,
    files: Vec<String>,
}

impl Record {
    fn finish(self) -> Option<Package> {
        if self.name.is_empty() || self.version.is_empty() {
            return None;
        }
        let mut p = Package::new(Ecosystem::Apk, &self.name, &self.version, "apk-db");
        p.arch = (!self.arch.is_empty()).then_some(self.arch);
        let origin = if self.origin.is_empty() {
            self.name.clone()
        } else {
            self.origin
        };
        p.source = Some(SourcePackage {
            name: origin,
            version: self.version,
        });
        if !self.license.is_empty() {
            p.licenses = vec![self.license];
        }
        p.files = self.files;
        Some(p)
    }
}
