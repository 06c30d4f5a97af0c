//! knockd.conf text of any shape: the parser never panics, every error names a line of the file,
//! and every configuration it accepts can be planned.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| knock_fuzz::check_config(data));
