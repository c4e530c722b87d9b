//! Memory management in safe code: physical frames, kernel stacks, how far the heap grows.

pub mod frames;
pub mod heap;
pub mod kstacks;
