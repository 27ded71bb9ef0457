//! Validators for the official JSON schemas of the report formats Berth writes, from the
//! schema files committed as fixtures: SARIF 2.1.0 (`crates/assess/tests/fixtures`, see its
//! `SOURCE`) and CycloneDX 1.6 with the schemas it references (`crates/scan/tests/fixtures/
//! schemas`). Nothing is fetched: a reference to anything else fails.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The SARIF 2.1.0 schema as a validator that checks formats (URIs included).
pub fn sarif_validator() -> jsonschema::Validator {
    let mut schema = read_json(&workspace_file(
        "assess/tests/fixtures/sarif-2.1.0-rtm.5.json",
    ));
    // The `language` pattern (of runs and tool components) has an unescaped `]`, a literal in
    // ECMA 262's lenient syntax that Rust's regex engines (and so the meta-schema's `regex`
    // format check) refuse. Escaping it keeps its meaning exactly.
    fn escape(v: &mut Value, fixed: &mut usize) {
        match v {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if key == "pattern" && value == "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$" {
                        *value = Value::from(r"^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\]?$");
                        *fixed += 1;
                    } else {
                        escape(value, fixed);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| escape(i, fixed)),
            _ => {}
        }
    }
    let mut fixed = 0;
    escape(&mut schema, &mut fixed);
    assert_eq!(fixed, 2, "the SARIF schema fixture changed");
    // Read as draft-07, as the OASIS standard's edition of this schema declares: draft-04 has
    // no `uri-reference` format, so under it artifact locations would go unchecked. The schema
    // uses nothing whose meaning differs between the two drafts (no `exclusiveMinimum`,
    // `exclusiveMaximum` or `dependencies`; `id` appears only as a property name below the root).
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    schema["$schema"] = Value::from("http://json-schema.org/draft-07/schema#");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the SARIF schema does not compile: {e}"))
}

/// Serves the schemas the CycloneDX schema references from the fixtures, and nothing else.
struct CycloneDxSchemas;

impl jsonschema::Retrieve for CycloneDxSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let name = name.split('#').next().unwrap_or_default();
        let path = workspace_file("scan/tests/fixtures/schemas").join(name);
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }
}

/// The CycloneDX 1.6 BOM schema as a validator that checks formats.
pub fn cyclonedx_validator() -> jsonschema::Validator {
    let schema = read_json(&workspace_file(
        "scan/tests/fixtures/schemas/bom-1.6.SNAPSHOT.schema.json",
    ));
    jsonschema::options()
        .with_retriever(CycloneDxSchemas)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the CycloneDX schema does not compile: {e}"))
}

/// Every error of `doc` against `validator`, with where it is, for assertion messages.
pub fn schema_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}
