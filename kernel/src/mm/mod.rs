//! Memory management in safe code: physical frames.

pub mod frames;
