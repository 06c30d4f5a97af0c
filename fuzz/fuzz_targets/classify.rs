//! Frames of any shape: the classifier never panics, and what it reports agrees with the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| knock_fuzz::check_frame(frame));
