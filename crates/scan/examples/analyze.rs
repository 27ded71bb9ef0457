//! Analyses an image and prints its inventory.
//!
//! ```text
//! cargo run -p berth-scan --example analyze -- oci:DIR[:TAG] | archive:FILE[:TAG] | registry:[http://]HOST/REPO[:TAG] [table|json|cyclonedx|spdx]
//! ```

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_scan::{
    AnalyzeOptions, ImageReport, LocalSource, Progress, RegistrySource, ScanError, output,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(image) = args.first() else {
        eprintln!(
            "usage: analyze oci:DIR[:TAG] | archive:FILE[:TAG] | registry:[http://]HOST/REPO[:TAG] [table|json|cyclonedx|spdx]"
        );
        std::process::exit(2);
    };
    let format = args.get(1).map(String::as_str).unwrap_or("table");
    match run(image).await {
        Ok(report) => {
            let text = match format {
                "json" => {
                    serde_json::to_string_pretty(&output::to_json(&report)).unwrap_or_default()
                }
                "cyclonedx" => {
                    serde_json::to_string_pretty(&output::to_cyclonedx(&report)).unwrap_or_default()
                }
                "spdx" => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    serde_json::to_string_pretty(&output::to_spdx(&report, now)).unwrap_or_default()
                }
                _ => output::to_table(&report),
            };
            let _ = writeln!(std::io::stdout(), "{text}");
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn split_tag(s: &str) -> (&str, &str) {
    match s.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (s, ""),
    }
}

async fn run(image: &str) -> Result<ImageReport, ScanError> {
    let progress: berth_scan::ProgressFn = std::sync::Arc::new(|p| {
        if let Progress::LayerDone { digest, cached } = p {
            eprintln!(
                "layer {digest} done{}",
                if cached { " (cached)" } else { "" }
            );
        }
    });
    let opts = AnalyzeOptions::default();
    if let Some(rest) = image.strip_prefix("oci:") {
        let (dir, tag) = split_tag(rest);
        berth_scan::analyze_image(&LocalSource::oci_layout(dir)?, tag, &opts, progress).await
    } else if let Some(rest) = image.strip_prefix("archive:") {
        let (file, tag) = split_tag(rest);
        berth_scan::analyze_image(&LocalSource::archive(file).await?, tag, &opts, progress).await
    } else if let Some(rest) = image.strip_prefix("registry:") {
        let (plain, rest) = match rest.strip_prefix("http://") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (src, reference) = RegistrySource::from_image_ref(rest, None, plain)?;
        berth_scan::analyze_image(&src, &reference, &opts, progress).await
    } else {
        Err(ScanError::Source(format!("unknown image {image:?}")))
    }
}
