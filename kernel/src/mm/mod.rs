//! Memory management in safe code: physical frames, how far the heap grows.

pub mod frames;
pub mod heap;
