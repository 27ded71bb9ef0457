#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_scan::fuzz::os_release(data));
