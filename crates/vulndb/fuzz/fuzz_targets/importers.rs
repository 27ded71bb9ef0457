//! Every importer on arbitrary documents, and the zip reader on arbitrary archives: errors,
//! never panics. The first byte picks the importer.

#![no_main]

use std::io::Cursor;

use berth_vulndb::import::{AlpineSecdb, DebianTracker, Limits, Osv, import_bytes, import_zip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, doc)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_document_bytes: 1 << 20,
        max_documents: 1000,
        max_total_bytes: 16 << 20,
    };
    let _ = match which % 4 {
        0 => import_bytes(&Osv::default(), "fuzz", doc, &limits),
        1 => import_bytes(&DebianTracker, "fuzz", doc, &limits),
        2 => import_bytes(&AlpineSecdb, "fuzz", doc, &limits),
        _ => import_zip(&Osv::default(), Cursor::new(doc), "fuzz", &limits),
    };
});
