//! CycloneDX output validated against the official CycloneDX 1.6 JSON schema (shipped by the
//! PyPI package cyclonedx-python-lib, committed under fixtures/schemas).

mod common;

use berth_scan::output;
use common::*;
use serde_json::Value;

/// Serves the schemas the BOM schema references from the fixtures, and nothing else.
struct Fixtures;

impl jsonschema::Retrieve for Fixtures {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('#')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(serde_json::from_slice(&fixture(&format!(
            "schemas/{name}"
        )))?)
    }
}

#[test]
fn cyclonedx_is_valid_against_the_official_schema() {
    let schema: Value =
        serde_json::from_slice(&fixture("schemas/bom-1.6.SNAPSHOT.schema.json")).unwrap();
    let validator = jsonschema::options()
        .with_retriever(Fixtures)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let mut layers = vec![
        vec![
            dir("etc"),
            symlink("etc/os-release", "../usr/lib/os-release"),
            file("usr/lib/os-release", fixture("os-release-debian12")),
            file("var/lib/dpkg/status", fixture("dpkg-status")),
        ],
        vec![
            file(
                "app/node_modules/@scope/thing/package.json",
                r#"{"name":"@scope/thing","version":"1.0.0","license":"MIT"}"#,
            ),
            file(
                "app/lib/python3.11/site-packages/mypy_extensions-1.1.0.dist-info/METADATA",
                fixture("python/mypy_extensions-METADATA"),
            ),
            file("opt/java/cdi-api-1.2.jar", fixture("cdi-api-1.2.jar")),
        ],
    ];
    layers[1].push(real(
        "opt/lib/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ));
    let report = analyze_layers(&layers, Comp::Gzip);
    assert!(report.packages.len() > 10);
    let bom = output::to_cyclonedx(&report);
    let errors: Vec<String> = validator
        .iter_errors(&bom)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // And the validator does reject a broken document.
    let mut broken = bom.clone();
    broken["components"][1]["type"] = Value::from("not-a-type");
    assert!(!validator.is_valid(&broken));
}
