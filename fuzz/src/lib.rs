//! The checks behind knock's fuzz targets, kept in a library so that a target is one line and
//! the seed writer can run every seed through the same checks.

mod config;
mod frame;

pub use config::check_config;
pub use frame::check_frame;
